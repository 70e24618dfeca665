//! The `callstream-epoll` binary as an operator runs it.
#[path = "../../../tests/shared/binary.rs"]
mod binary;

#[test]
fn boots_serves_metrics_apart_and_exits_on_sigterm() {
    binary::boots_serves_metrics_apart_and_exits_on_sigterm(
        env!("CARGO_BIN_EXE_callstream-epoll"),
        &[],
        &[],
    );
}
