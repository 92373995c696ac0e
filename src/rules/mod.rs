//! Rule files: substitution, strict parsing and validation into a [`RuleSet`] of this
//! build's signal and action kinds. The rule model itself is generic and lives in
//! [`crate::core::rule`]; this module names the concrete kinds.

pub mod enable;
pub mod load;
pub mod subst;

pub use enable::{partition, Disabled};
pub use load::{load, load_texts, LoadError};

use crate::actions::ActionSpec;
use crate::signals::SignalSpec;

pub use crate::core::rule::{Priority, RateLimit, Verify};

/// A rule as written, with this build's kinds.
pub type RuleSpec = crate::core::rule::RuleSpec<SignalSpec, ActionSpec>;
/// A validated rule.
pub type Rule = crate::core::rule::Rule<SignalSpec, ActionSpec>;
/// A distinct signal source and the rules that read it.
pub type Source = crate::core::rule::Source<SignalSpec>;
/// A complete, valid rule set.
pub type RuleSet = crate::core::rule::RuleSet<SignalSpec, ActionSpec>;
/// The engine over this build's kinds.
pub type Engine = crate::core::engine::Engine<SignalSpec, ActionSpec>;
