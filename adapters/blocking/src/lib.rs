//! callstream on std threads, one per connection.
