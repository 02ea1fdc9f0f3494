//! Helpers shared by the command-line tools.
