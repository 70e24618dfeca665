//! callstream on smol / async-io: a byte pump and a timer per connection.
