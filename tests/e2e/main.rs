//! End-to-end tests: the real `quiver` binary, real files, a private `redis-server`.

mod aggregations;
mod availability;
mod azure;
mod ballista;
mod cli;
mod connections;
mod console;
mod dashboards;
mod faults;
mod feast_compat;
mod generations;
mod materialize;
mod object_store;
mod online_store;
mod push;
mod push_history;
mod redis_health;
mod registry_redis;
mod retrieve;
mod security;
mod serve;
mod training_limits;
