//! The configuration file. PLACEHOLDER: lands with issue 4.
