//! Random workloads (to be written).
