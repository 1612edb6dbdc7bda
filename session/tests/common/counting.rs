//! A global allocator that counts the heap bytes each thread holds (the session-cost tests run a current-thread
//! runtime, so the counter is exactly what that runtime's sessions hold). Include with
//! `#[path = "common/counting.rs"] mod counting;` and `#[global_allocator] static ALLOC: counting::Counting =
//! counting::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub(crate) struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + n));
}

/// Heap bytes this thread holds now (allocated minus freed since it started).
pub(crate) fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
