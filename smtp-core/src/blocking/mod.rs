//! Blocking drivers: the engine on `std::net` sockets with rustls.

pub mod server;
