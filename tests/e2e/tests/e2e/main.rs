//! End-to-end tests on the real local control plane (one per test run, shared), each test
//! in its own namespace with its own `shoal run` process, driven with the real kubectl.

mod autoscaler;
mod canary;
mod chaos;
mod chart;
mod controller;
mod desync;
mod drain;
mod foreign;
mod fuzz;
mod helpers;
mod observability;
mod refusals;
mod restarts;
mod rollout;
mod routers;
mod scale;
mod schedules;
mod schema;
mod signal;
mod throttle;
