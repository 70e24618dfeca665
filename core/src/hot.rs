//! Naming the memory a connection's next input touches, for
//! [`Connection::hot_memory`](crate::connection::Connection::hot_memory):
//! each part of the stream's state hands its ranges to a [`Visit`]. A range
//! is an address and a length; nothing here reads what it points at.

/// Receives one range: its start and length in bytes.
pub(crate) type Visit<'a> = &'a mut dyn FnMut(*const u8, usize);

/// A 20 ms media message with its frame header, rounded up: how much of a
/// buffer one frame (or its echo) touches.
pub(crate) const HOT_BYTES: usize = 512;

/// The address of `value`.
pub(crate) fn of<T>(value: &T) -> *const u8 {
    std::ptr::from_ref(value).cast()
}

/// The elements of `items` (a list of buffers, say: their pointers and
/// lengths, not what they hold).
pub(crate) fn elements<T>(visit: Visit<'_>, items: &[T]) {
    visit(items.as_ptr().cast(), size_of_val(items));
}

/// The start of a buffer's allocation (`start`, `capacity`) that the next
/// frame writes from its beginning: at most [`HOT_BYTES`].
pub(crate) fn head(visit: Visit<'_>, start: *const u8, capacity: usize) {
    visit(start, capacity.min(HOT_BYTES));
}

/// A queue in `buf` (its allocation `capacity` bytes) read from `read` and
/// appended to at its end, which moves what is left to its start before an
/// append once half or more of it is read (the jitter buffer's fifo, the
/// pacer's queue): where the next frame's bytes are appended and read.
pub(crate) fn queue(visit: Visit<'_>, buf: &[u8], capacity: usize, read: usize) {
    let start = if read >= buf.len() / 2 { 0 } else { read };
    visit(
        buf.as_ptr().wrapping_add(start),
        capacity.saturating_sub(start).min(HOT_BYTES),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(buf: &[u8], capacity: usize, read: usize) -> (usize, usize) {
        let mut got = None;
        queue(
            &mut |p, len| got = Some((p as usize - buf.as_ptr() as usize, len)),
            buf,
            capacity,
            read,
        );
        got.expect("one range")
    }

    #[test]
    fn a_queue_is_named_where_its_next_append_lands() {
        let buf = vec![0u8; 640];
        // Read to the end (a jitter buffer or pacer between frames): it
        // moves to the start, where the next frame goes.
        assert_eq!(named(&buf[..160], 640, 160), (0, 512));
        assert_eq!(named(&buf[..160], 160, 160), (0, 160));
        // Half read: also moved first.
        assert_eq!(named(&buf[..320], 640, 160), (0, 512));
        // Less than half read: stays, and is read from `read`.
        assert_eq!(named(&buf[..480], 640, 100), (100, 512));
        assert_eq!(named(&buf[..480], 480, 100), (100, 380));
    }
}
