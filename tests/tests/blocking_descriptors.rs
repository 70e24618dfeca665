//! The blocking server out of file descriptors: `accept` fails (EMFILE), the
//! accept loop pauses instead of spinning, the calls go on, and a shutdown
//! still reaches them while the listener keeps failing, and wakes an
//! `accept()` that waits with no descriptor to wake it with. A test binary of its
//! own: it lowers the whole process's file limit.
// Not run here: `out_of_descriptors_the_server_backs_off_then_serves`, which
// expects the first caller left waiting. A blocked `accept()` reserved its
// descriptor when it began to wait, so it takes one caller whatever the
// limit; only the accepts after it fail.
#[path = "support/descriptors.rs"]
#[allow(dead_code)]
mod descriptors;
use callstream_tests::Adapter;

#[test]
fn out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them() {
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(
        Adapter::Blocking,
        true,
    );
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(
        Adapter::Blocking,
        false,
    );
}

#[test]
fn a_flood_of_ended_connections_gives_its_descriptors_back() {
    descriptors::a_flood_of_ended_connections_gives_its_descriptors_back(
        callstream_tests::Adapter::Blocking,
    );
}
