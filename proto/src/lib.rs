//! Quiver's protobuf definitions (Feast-compatible `ServingService`) and the code generated from
//! them; nothing else. Used only by the feature server and the load generator. The `.proto` files
//! arrive with the feature-server issue.
