//! The `callstream` server binary.
fn main() {
    println!(
        "callstream {}: the server arrives with the smol adapter",
        env!("CARGO_PKG_VERSION")
    );
}
