//! `[System]` rules: thresholds on the host. `read` holds the readers of
//! `/proc` and `/sys` (and `statvfs`), which run in the probe workers with
//! fixed buffers; `threshold` judges their readings against the rule's
//! threshold with the `For=` hysteresis, in the engine; `sensor` resolves a
//! thermal zone type or a hwmon label to its file when the rules load.

mod explain;
mod read;
mod sensor;
mod threshold;

pub use explain::{explain, missing_sources};
pub use read::{Reading, Source, Unread, read};
pub use sensor::resolve as resolve_sensor;
pub use threshold::{SystemCause, SystemWatch};
