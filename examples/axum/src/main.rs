//! Runs the example service: `PUBLIC_BASE_URL=https://… TWILIO_AUTH_TOKEN=…
//! cargo run -p callstream-example-axum` (listens on 127.0.0.1:3000, or `PORT`).
use callstream_core::public_url::PublicBase;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("PUBLIC_BASE_URL").unwrap_or_else(|_| "https://localhost".into());
    let settings = callstream_example_axum::Settings {
        public_base: PublicBase::parse(&base)?,
        auth_tokens: std::env::var("TWILIO_AUTH_TOKEN").into_iter().collect(),
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    axum::serve(listener, callstream_example_axum::router(settings)).await?;
    Ok(())
}
