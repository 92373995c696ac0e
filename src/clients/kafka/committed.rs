//! The committed offsets of many consumer groups through one client, with librdkafka's
//! ListConsumerGroupOffsets admin call, which rust-rdkafka 0.39 does not wrap (hence the only
//! `unsafe` of the crate, kept to this file). A consumer's `committed_offsets` reads only its
//! own `group.id`, so without this every measured group cost a client of its own: about
//! 0.45 MiB and four threads each, 445 MiB and 4 000 threads for 1 000 groups.
//!
//! librdkafka 2.12 takes one group per call (the OffsetFetch of KIP-709 naming many groups is
//! not implemented there), so every group's request is issued at once on one result queue:
//! they travel pipelined on the one connection to each group coordinator, and the wait is
//! that of the slowest answer, not the sum. Coordinators are looked up once and cached by
//! librdkafka. Each request is bounded by `timeout`.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

/// `(topic, partition)`.
pub(super) type Key = (String, i32);

/// A group's committed offset per partition asked for (`None`: nothing committed).
pub(super) type Offsets = HashMap<Key, Option<i64>>;

/// Why a group's offsets are unknown.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Failure {
    /// The whole request failed (no coordinator, timed out): librdkafka's reason.
    Group(String),
    /// One partition's answer carried an error.
    Partition { key: Key, source: RdKafkaError },
}

/// The committed offsets of each `(group, partitions)` of `requests`, in their order.
pub(super) fn committed_offsets(
    client: &BaseConsumer,
    requests: &[(&str, &[Key])],
    timeout: Duration,
) -> Vec<Result<Offsets, Failure>> {
    let mut answers: Vec<Option<Result<Offsets, Failure>>> = Vec::with_capacity(requests.len());
    let queue = Queue::new(client);
    let mut pending = 0usize;
    for (index, (group, partitions)) in requests.iter().enumerate() {
        match queue.send(index, group, partitions, timeout) {
            Ok(()) => {
                pending += 1;
                answers.push(None);
            }
            Err(why) => answers.push(Some(Err(Failure::Group(why)))),
        }
    }
    // librdkafka fails each request itself after `timeout`; the margin only guards against
    // an answer that never comes.
    let deadline = Instant::now() + timeout + Duration::from_secs(1);
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(event) = queue.poll(left) else {
            continue;
        };
        if let Some((index, answer)) = event.answer() {
            if let Some(slot @ None) = answers.get_mut(index) {
                *slot = Some(answer);
                pending -= 1;
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Err(Failure::Group(format!("no answer within {timeout:?}")))))
        .collect()
}

/// A result queue of one client, destroyed on drop. Requests still in flight then keep the
/// queue alive inside librdkafka until they complete.
struct Queue {
    client: *mut rd::rd_kafka_t,
    queue: *mut rd::rd_kafka_queue_t,
}

impl Queue {
    fn new(client: &BaseConsumer) -> Queue {
        let client = rdkafka::consumer::Consumer::client(client).native_ptr();
        // SAFETY: `client` is a live handle, borrowed for the queue's whole use (the queue
        // does not outlive `committed_offsets`, which borrows the consumer).
        let queue = unsafe { rd::rd_kafka_queue_new(client) };
        Queue { client, queue }
    }

    /// Issues one ListConsumerGroupOffsets request for `group`; its answer carries `index`.
    fn send(&self, index: usize, group: &str, partitions: &[Key], timeout: Duration) -> Result<(), String> {
        let name = CString::new(group).map_err(|_| "the group name holds a NUL byte".to_owned())?;
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(1);
        let mut errstr = [0 as c_char; 256];
        // SAFETY: every pointer is live for the calls; librdkafka copies the request object
        // and the options into its own request (rdkafka_admin.c), so both are destroyed
        // right after, whatever happened.
        unsafe {
            let options = rd::rd_kafka_AdminOptions_new(
                self.client,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            );
            if options.is_null() {
                return Err("librdkafka refused the admin options".to_owned());
            }
            let err = rd::rd_kafka_AdminOptions_set_request_timeout(
                options,
                millis,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                rd::rd_kafka_AdminOptions_destroy(options);
                return Err(CStr::from_ptr(errstr.as_ptr()).to_string_lossy().into_owned());
            }
            // The opaque is the request's index, not a pointer: librdkafka only hands it back.
            rd::rd_kafka_AdminOptions_set_opaque(options, (index + 1) as *mut c_void);
            let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), tpl.ptr());
            rd::rd_kafka_ListConsumerGroupOffsets(self.client, &mut request, 1, options, self.queue);
            rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
            rd::rd_kafka_AdminOptions_destroy(options);
        }
        Ok(())
    }

    /// The next result, waiting at most `left`.
    fn poll(&self, left: Duration) -> Option<Event> {
        let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue is live; a non-null event is owned by the returned `Event`.
        let event = unsafe { rd::rd_kafka_queue_poll(self.queue, millis) };
        (!event.is_null()).then_some(Event(event))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_queue_new`, destroyed once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) }
    }
}

/// One event of the result queue, destroyed on drop.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: owned, destroyed once.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// A C string of librdkafka's, copied; empty for null.
///
/// # Safety
/// `s` is null or a NUL-terminated string live for the call.
unsafe fn text(s: *const c_char) -> String {
    if s.is_null() {
        String::new()
    } else {
        CStr::from_ptr(s).to_string_lossy().into_owned()
    }
}

impl Event {
    /// The index of the request this event answers, and its answer copied out of
    /// librdkafka's memory; `None` for an event that is no such answer.
    fn answer(&self) -> Option<(usize, Result<Offsets, Failure>)> {
        // SAFETY: the event is live until `self` drops; every pointer read below belongs to
        // it and is copied before returning.
        unsafe {
            let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(self.0);
            let index = (rd::rd_kafka_event_opaque(self.0) as usize).checked_sub(1)?;
            if result.is_null() {
                return None;
            }
            if rd::rd_kafka_event_error(self.0) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let why = text(rd::rd_kafka_event_error_string(self.0));
                return Some((index, Err(Failure::Group(why))));
            }
            let mut count = 0usize;
            let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
            // One group per request.
            if count == 0 || groups.is_null() {
                return Some((index, Err(Failure::Group("an answer naming no group".to_owned()))));
            }
            let group = *groups;
            let error = rd::rd_kafka_group_result_error(group);
            let answer = if error.is_null() {
                partitions(rd::rd_kafka_group_result_partitions(group))
            } else {
                Err(Failure::Group(text(rd::rd_kafka_error_string(error))))
            };
            Some((index, answer))
        }
    }
}

/// The offsets of a result's partition list.
///
/// # Safety
/// `list` is null or a live partition list.
unsafe fn partitions(list: *const rd::rd_kafka_topic_partition_list_t) -> Result<Offsets, Failure> {
    let mut offsets = Offsets::new();
    if list.is_null() {
        return Ok(offsets);
    }
    let count = usize::try_from((*list).cnt).unwrap_or(0);
    for i in 0..count {
        let element = &*(*list).elems.add(i);
        let key = (text(element.topic), element.partition);
        if element.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let source = RdKafkaError::OffsetFetch(RDKafkaErrorCode::from(element.err));
            return Err(Failure::Partition { key, source });
        }
        // A negative offset (-1001, "invalid") is no commit.
        let offset = (element.offset >= 0).then_some(element.offset);
        offsets.insert(key, offset);
    }
    Ok(offsets)
}
