//! Allocator settings for the pipeline's processes (the `lineage` binary and the
//! in-process benchmarks), which use mimalloc as their global allocator.

/// mimalloc's `mi_option_purge_decommits` (not exported as a constant by
/// `libmimalloc-sys`; its place in `mi_option_e` of the bundled v3 `mimalloc.h`).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Has mimalloc give back memory it no longer uses with `MADV_FREE` instead of
/// decommitting it (`MADV_DONTNEED`). A decommitted page is zeroed by the kernel when
/// it is next touched, and records flow from parser threads to the table sink and are
/// freed there, so a replay kept re-faulting the same memory (about 20k page faults
/// per 1M events; 11–12k with this). The kernel still reclaims `MADV_FREE` pages
/// under memory pressure. `MIMALLOC_PURGE_DECOMMITS=1` in the environment restores
/// mimalloc's default: an environment setting wins over this one.
///
/// It changes nothing when mimalloc is not the global allocator.
///
/// # Safety
///
/// mimalloc's option setters are not thread safe: call this first thing in `main`,
/// before any other thread exists (one that could allocate and so read the option).
pub unsafe fn tune_allocator() {
    // SAFETY: the caller guarantees no other thread is running.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DECOMMITS, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_gives_memory_back_without_decommitting_it() {
        // In the bundled mimalloc.h, `purge_decommits` comes right before
        // `allow_large_os_pages`, which libmimalloc-sys does export.
        assert_eq!(
            MI_OPTION_PURGE_DECOMMITS + 1,
            libmimalloc_sys::mi_option_large_os_pages
        );
        // SAFETY: mimalloc is not this test binary's global allocator, and this test
        // is the only code that sets or reads an option.
        let value = unsafe {
            tune_allocator();
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DECOMMITS)
        };
        assert_eq!(value, 0);
    }
}
