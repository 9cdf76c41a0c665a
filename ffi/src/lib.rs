//! The C ABI of Chronica (work in progress).
