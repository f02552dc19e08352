//! Queues of messages of any [`Message`] type between processes: the
//! byte-message MPMC queue ([`shmkit_core::queue::msg`]) in a segment.
//!
//! [`Shared<MsgQueue>`](Shared) places the core queue in a named,
//! anonymous or memfd segment (its capacity and longest message fixed at
//! creation and checked by every opener); its view hands out the core
//! producer and consumer handles.

use std::ptr::NonNull;

use shmkit_core::queue::joinable::JoinableQueue;
use shmkit_core::queue::msg::{MsgParams, MsgQueue};

use crate::handle::{Create, IntoInit};

impl Create for MsgQueue {
    type Init = MsgParams;

    fn params(init: &MsgParams) -> MsgParams {
        *init
    }

    unsafe fn write_init(_payload: NonNull<u8>, _params: &MsgParams, _init: MsgParams) {}
}

impl IntoInit<MsgQueue> for MsgParams {
    fn into_init(self) -> MsgParams {
        self
    }
}

/// `(capacity, max_len)`: the default registry sizes.
impl IntoInit<MsgQueue> for (usize, usize) {
    fn into_init(self) -> MsgParams {
        MsgParams::new(self.0, self.1)
    }
}

impl Create for JoinableQueue {
    type Init = MsgParams;

    fn params(init: &MsgParams) -> MsgParams {
        *init
    }

    unsafe fn write_init(_payload: NonNull<u8>, _params: &MsgParams, _init: MsgParams) {}
}

impl IntoInit<JoinableQueue> for MsgParams {
    fn into_init(self) -> MsgParams {
        self
    }
}

/// `(capacity, max_len)`: the default registry sizes.
impl IntoInit<JoinableQueue> for (usize, usize) {
    fn into_init(self) -> MsgParams {
        MsgParams::new(self.0, self.1)
    }
}
