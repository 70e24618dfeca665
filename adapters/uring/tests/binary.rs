//! The `callstream-uring` binary as an operator runs it, with a tick.
#[path = "../../../tests/shared/binary.rs"]
mod binary;

#[test]
fn boots_serves_metrics_apart_and_exits_on_sigterm() {
    binary::boots_serves_metrics_apart_and_exits_on_sigterm(
        env!("CARGO_BIN_EXE_callstream-uring"),
        &[("CALLSTREAM_URING_TICK_MS", "1")],
        &["each loop gathers completions for at least the tick"],
    );
}
