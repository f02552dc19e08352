//! Role slots across `fork`: a handle's memory copied into a child must not
//! detach the live parent when the child drops it.

use shmkit_posix::queue::{Queue, TryRecvError};
use shmkit_testkit::{fork, Exit};

#[test]
fn a_producer_copy_dropped_in_a_fork_child_does_not_disconnect_the_parent() {
    let q = Queue::<u64>::anonymous(8).unwrap();
    let tx = q.view().producer().unwrap();
    let mut rx = q.view().consumer().unwrap();
    let child = fork(|| {
        // SAFETY: a bitwise copy of the parent's handle, as a fork child
        // sees it; the original is never used in this process, so the copy
        // is dropped exactly once here.
        let copy = unsafe { std::ptr::read(&tx) };
        drop(copy);
        0
    });
    assert_eq!(child.wait(), Exit::Code(0));
    // The parent still holds its producer: the queue is empty, not closed.
    assert!(matches!(rx.try_pop(), Err(TryRecvError::Empty)));
    drop(tx);
    assert!(matches!(rx.try_pop(), Err(TryRecvError::Disconnected)));
}
