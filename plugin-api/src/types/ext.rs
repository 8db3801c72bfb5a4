//! Extension fields: how a struct of this interface gains fields in a later 0.2 version
//! without changing its layout.
//!
//! A struct that may grow ends in an [`Extensions`] list. A field added later gets a
//! [`FieldId`] (a number, never reused) and a documented [`FieldValue`] type, plus typed
//! accessors on the struct; it travels in the list. A side built against an older version
//! never looks at ids it does not know, and a side built against a newer version reads `None`
//! from an older one, so either side may be the newer. The list's own layout never changes;
//! abi_stable checks it like every other type.

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

/// The number of an extension field. Ids are allocated in [`FieldId`]'s constants and never
/// reused; a value is only ever written with the type its constant documents.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u32);

impl FieldId {
    /// `F64` on `RequestRecord`: seconds the TCP connect took (a proxy's `CONNECT` included),
    /// when the request opened the connection it was answered on. Since interface 0.2.1.
    pub const CONNECT_S: FieldId = FieldId(1);
    /// `F64` on `RequestRecord`: seconds the TLS handshake took, when the request opened an
    /// https connection. Since interface 0.2.1.
    pub const TLS_HANDSHAKE_S: FieldId = FieldId(2);
    /// `U64List` on `DatasetItem`: a conversation's turns, as the index one past each turn's
    /// last message in its `Messages` prompt (the run's `--multi-turn` sends turn by turn,
    /// with the live replies in between). Without it, every user message ends a turn. Since
    /// interface 0.2.2.
    pub const TURN_ENDS: FieldId = FieldId(3);
    /// `U64List` on `DatasetItem`: each turn's `max_tokens` (0: the run's). Since 0.2.2.
    pub const TURN_MAX_TOKENS: FieldId = FieldId(4);
    /// `F64List` on `DatasetItem`: seconds to wait before sending each turn (a recorded tool
    /// call's latency). Since 0.2.2.
    pub const TURN_WAIT_S: FieldId = FieldId(5);
    /// `Str` on `DatasetItem`: the conversation's routing key; each turn's body gets
    /// `"rid": "<key>_t<turn>"` (SGLang's request id) unless it has one. Since 0.2.2.
    pub const CONVERSATION_KEY: FieldId = FieldId(6);
    /// `U64` on `RequestRecord`: the conversation this request was a turn of, numbered from 0
    /// within the run in the order conversations started. Since 0.2.2.
    pub const CONVERSATION: FieldId = FieldId(7);
    /// `U64` on `RequestRecord`: which turn of its conversation, from 1 (evalscope's
    /// `input_num_turns`). Since 0.2.2.
    pub const TURN: FieldId = FieldId(8);
    /// `Bool` on a dataset source's `PluginInfo`: its items carry their own send times
    /// ([`FieldId::ARRIVAL_S`]), as a recorded trace does. The host replays them once, in
    /// open loop, and `--number` defaults to the whole trace. Since 0.2.2.
    pub const REPLAYS_SCHEDULE: FieldId = FieldId(9);
    /// `F64` on `DatasetItem`: seconds after the run's start at which to send this request
    /// (the trace's offset, already scaled by any speed factor). Since 0.2.2.
    pub const ARRIVAL_S: FieldId = FieldId(10);
    /// `Str` on `DatasetItem`: the request's id (a trace's `request_id`): sent as
    /// `x-request-id` and stored in `benchmark_data.db`'s `request_id`. Since 0.2.2.
    pub const REQUEST_ID: FieldId = FieldId(11);
    /// `Json` on `DatasetItem`: an object of HTTP headers for this request alone, applied over
    /// the adapter's and `--headers`. Since 0.2.2.
    pub const HEADERS: FieldId = FieldId(12);
    /// `U64` on `DatasetItem`: this request's `max_tokens`, over the run's (a trace's
    /// recorded output length). Since 0.2.2.
    pub const MAX_TOKENS: FieldId = FieldId(13);
    /// `Bool` on a dataset source's `PluginInfo`: a speed benchmark, whose text prompts go to
    /// `/v1/completions` and whose run writes `speed_benchmark.json`. Since 0.2.2.
    pub const SPEED_BENCHMARK: FieldId = FieldId(14);
    /// `Str` on `RequestRecord`: the model the server's response named
    /// ([`crate::ResponseEvent::Model`]). Since 0.2.4.
    pub const RESPONSE_MODEL: FieldId = FieldId(15);
    /// Test only (`next-interface-check`): a `U64` on `RequestRecord` that no released
    /// interface has.
    #[cfg(feature = "next-interface-check")]
    pub const NEXT_INTERFACE_CHECK: FieldId = FieldId(0xFFFF_0001);
}

/// The value of an extension field. This enum is closed for good: new fields pick one of these
/// types (structured values go as `Json`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A flag.
    Bool(bool),
    /// An unsigned count or id.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A number.
    F64(f64),
    /// Text.
    Str(RString),
    /// Raw bytes.
    Bytes(RVec<u8>),
    /// A list of numbers.
    F64List(RVec<f64>),
    /// A list of unsigned integers.
    U64List(RVec<u64>),
    /// Structured data as JSON text.
    Json(RString),
}

/// One extension field.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Extension {
    /// Which field.
    pub id: FieldId,
    /// Its value.
    pub value: FieldValue,
}

/// The extension fields of one struct value, at most one per id. Empty (and allocation-free)
/// until a field is set.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Extensions {
    fields: RVec<Extension>,
}

impl Extensions {
    /// No fields.
    pub const fn new() -> Self {
        Extensions {
            fields: RVec::new(),
        }
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of field `id`, if set.
    pub fn get(&self, id: FieldId) -> Option<&FieldValue> {
        self.fields.iter().find(|f| f.id == id).map(|f| &f.value)
    }

    /// Sets field `id`, replacing an earlier value.
    pub fn set(&mut self, id: FieldId, value: FieldValue) {
        match self.fields.iter_mut().find(|f| f.id == id) {
            Some(f) => f.value = value,
            None => self.fields.push(Extension { id, value }),
        }
    }

    /// Every field that is set, in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = &Extension> {
        self.fields.iter()
    }

    /// Field `id` as a `U64`; `None` when unset or of another type.
    pub fn u64(&self, id: FieldId) -> Option<u64> {
        match self.get(id) {
            Some(FieldValue::U64(v)) => Some(*v),
            _ => None,
        }
    }

    /// Field `id` as an `F64`; `None` when unset or of another type.
    pub fn f64(&self, id: FieldId) -> Option<f64> {
        match self.get(id) {
            Some(FieldValue::F64(v)) => Some(*v),
            _ => None,
        }
    }

    /// Field `id` as a `Str`; `None` when unset or of another type.
    pub fn str(&self, id: FieldId) -> Option<&str> {
        match self.get(id) {
            Some(FieldValue::Str(v)) => Some(v.as_str()),
            _ => None,
        }
    }

    /// Field `id` as a `U64List`; `None` when unset or of another type.
    pub fn u64_list(&self, id: FieldId) -> Option<&[u64]> {
        match self.get(id) {
            Some(FieldValue::U64List(v)) => Some(v.as_slice()),
            _ => None,
        }
    }

    /// Field `id` as an `F64List`; `None` when unset or of another type.
    pub fn f64_list(&self, id: FieldId) -> Option<&[f64]> {
        match self.get(id) {
            Some(FieldValue::F64List(v)) => Some(v.as_slice()),
            _ => None,
        }
    }

    /// Field `id` as a `Bool`; `None` when unset or of another type.
    pub fn bool(&self, id: FieldId) -> Option<bool> {
        match self.get(id) {
            Some(FieldValue::Bool(v)) => Some(*v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_set_once_per_id_and_read_back_typed() {
        let mut ext = Extensions::new();
        assert!(ext.is_empty());
        ext.set(FieldId(7), FieldValue::U64(3));
        ext.set(FieldId(9), FieldValue::Str("x".into()));
        ext.set(FieldId(7), FieldValue::U64(4));
        assert_eq!(ext.iter().count(), 2);
        assert_eq!(ext.u64(FieldId(7)), Some(4));
        assert_eq!(ext.str(FieldId(9)), Some("x"));
        assert_eq!(
            ext.f64(FieldId(7)),
            None,
            "a field of another type reads as None"
        );
        assert_eq!(ext.u64(FieldId(8)), None);
    }
}
