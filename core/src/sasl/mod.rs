//! SASL.
