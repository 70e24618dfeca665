//! The io_uring server out of file descriptors: the multishot accept fails
//! (EMFILE), the reactor arms it again only after a back-off instead of
//! spinning on it, and takes the waiting connection once a descriptor is
//! free. A test binary of its own: it lowers the whole process's file limit.
#[path = "support/descriptors.rs"]
mod descriptors;

#[test]
fn out_of_descriptors_the_server_backs_off_then_serves() {
    descriptors::out_of_descriptors_the_server_backs_off_then_serves(
        callstream_tests::Adapter::Uring,
    );
}

/// Also: the calls go on meanwhile, and a shutdown still reaches them. (Its
/// multishot accept, armed under the normal limit, goes on accepting in
/// this one: what it checks here is the calls, the shutdown and the
/// metrics listener; the back-off is the test above's.)
#[test]
fn out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them() {
    use callstream_tests::Adapter;
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(Adapter::Uring, true);
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(Adapter::Uring, false);
}

#[test]
fn a_flood_of_ended_connections_gives_its_descriptors_back() {
    descriptors::a_flood_of_ended_connections_gives_its_descriptors_back(
        callstream_tests::Adapter::Uring,
    );
}
