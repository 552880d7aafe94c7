//! Property tests of schedules.
