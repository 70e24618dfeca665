//! The epoll server out of file descriptors: `accept` fails (EMFILE), the
//! reactor stops watching its listeners for a while instead of spinning on
//! them, and takes the waiting connection once a descriptor is free. A test
//! binary of its own: it lowers the whole process's file limit.
#[path = "support/descriptors.rs"]
mod descriptors;

#[test]
fn out_of_descriptors_the_server_backs_off_then_serves() {
    descriptors::out_of_descriptors_the_server_backs_off_then_serves(
        callstream_tests::Adapter::Epoll,
    );
}

/// Also: the calls go on meanwhile, and a shutdown still reaches them.
#[test]
fn out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them() {
    use callstream_tests::Adapter;
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(Adapter::Epoll, true);
    descriptors::out_of_descriptors_calls_go_on_and_a_shutdown_reaches_them(Adapter::Epoll, false);
}

#[test]
fn a_flood_of_ended_connections_gives_its_descriptors_back() {
    descriptors::a_flood_of_ended_connections_gives_its_descriptors_back(
        callstream_tests::Adapter::Epoll,
    );
}
