//! The smol server out of file descriptors: `accept` fails (EMFILE), the
//! accept loop pauses instead of spinning, the calls go on, and a shutdown
//! still reaches them while the listener keeps failing. A test binary of its
//! own: it lowers the whole process's file limit.
#[path = "support/descriptors.rs"]
mod descriptors;
use callstream_tests::Adapter;

#[test]
fn out_of_descriptors_the_server_backs_off_then_serves() {
    descriptors::out_of_descriptors_the_server_backs_off_then_serves(Adapter::Smol);
}

#[test]
fn out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them() {
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(Adapter::Smol, true);
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(Adapter::Smol, false);
}

#[test]
fn a_flood_of_ended_connections_gives_its_descriptors_back() {
    descriptors::a_flood_of_ended_connections_gives_its_descriptors_back(
        callstream_tests::Adapter::Smol,
    );
}
