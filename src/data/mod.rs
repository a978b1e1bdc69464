//! Data: reading (question/think/answer columns or `messages` conversations) and splitting the data set, encoding samples with a chat template, batching.
pub mod batch;
pub mod chat;
pub mod conversation;
pub mod download;
pub mod encode;
pub mod format;
pub mod messages;
pub mod pyjson;
pub mod pyrandom;
pub mod rows;
pub mod split;
pub mod stats;
pub mod tiktoken;
pub mod tokenizer;
