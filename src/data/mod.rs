//! Data: reading and splitting the data set, encoding samples with a chat template, batching.
pub mod batch;
pub mod chat;
pub mod download;
pub mod encode;
pub mod pyjson;
pub mod pyrandom;
pub mod rows;
pub mod split;
pub mod stats;
pub mod tiktoken;
pub mod tokenizer;
