//! The joinable queue (`Joinable`: a byte-message queue plus an
//! unfinished-task count and its wait point), laid out and attached by the
//! core object ([`JoinableQueue`]) as in a segment: the byte queue's
//! operations ([`super::msg::run_ops`]) through the joinable producers,
//! plus `task_done`, `join_timeout` and the count, checked against a model
//! while nobody scribbled.

use shmkit_core::queue::joinable::{Joinable, JoinableQueue, TaskDoneError};

use super::msg::{self, Hooks};
use super::{attach, object_region, HONEST};
use crate::{Clock, Input};

/// Runs one input: the byte queue's input format ([`msg::params`]), with
/// opcodes 11 (`task_done`) and 12 (`join_timeout`, the count).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let params = msg::params(setup, &mut input);
    let region =
        object_region::<JoinableQueue>(&params, setup, &mut input).expect("valid queue parameters");
    let joinable: Joinable<'_> = attach::<JoinableQueue>(&region, &params);
    let mut hooks = Tasks {
        joinable,
        clock: Clock::new(),
        unfinished: (setup & HONEST != 0).then_some(0),
    };
    msg::run_ops(
        setup,
        joinable.queue(),
        &mut input,
        || joinable.producer(),
        &mut hooks,
        &|input| region.scribble(input),
    );
}

/// The joinable operations, and the count an honest queue must show.
struct Tasks<'a> {
    joinable: Joinable<'a>,
    clock: Clock,
    /// Messages sent minus tasks done; `None` once a peer wrote.
    unfinished: Option<u32>,
}

impl Hooks for Tasks<'_> {
    fn op(&mut self, op: u8, input: &mut Input<'_>) {
        let j = &self.joinable;
        if op == 11 {
            let r = j.task_done();
            if let Some(n) = &mut self.unfinished {
                match r {
                    Ok(left) => {
                        assert!(*n > 0, "task_done succeeded with no task unfinished");
                        *n -= 1;
                        assert_eq!(left, *n, "task_done: the count left");
                    }
                    Err(TaskDoneError::TooManyCalls) => {
                        assert_eq!(*n, 0, "task_done refused with tasks unfinished");
                    }
                }
            }
        } else {
            let t = self.clock.timeout(input);
            let r = Clock::timed(t, "Joinable::join_timeout", || j.join_timeout(t));
            if let Some(n) = self.unfinished {
                assert_eq!(j.unfinished(), n, "the unfinished count");
                match r {
                    Ok(()) => assert_eq!(n, 0, "join returned with tasks unfinished"),
                    Err(e) => assert_eq!(e.unfinished, n, "join_timeout's count"),
                }
            }
        }
    }

    fn sent(&mut self) {
        if let Some(n) = &mut self.unfinished {
            *n += 1;
        }
    }

    fn scribbled(&mut self) {
        self.unfinished = None;
    }
}
