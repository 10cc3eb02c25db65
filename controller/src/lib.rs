//! stickycanary controller library.
