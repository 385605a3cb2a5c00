//! Memory that zone work frees in bulk (loading zone files, an import, an
//! export's text) goes back to the kernel: glibc keeps freed heap pages
//! mapped otherwise, and they count against the server's resident size for
//! its whole life.

/// Hands freed heap memory back to the kernel. Costs a walk of the
/// allocator's arenas (milliseconds), so call it after bulk work, not per
/// request.
pub fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions; 0 means keep no extra padding.
    unsafe {
        libc::malloc_trim(0);
    }
}
