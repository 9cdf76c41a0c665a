//! The Python module of Chronica (work in progress).
