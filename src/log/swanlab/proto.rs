//! Protobuf messages of the SwanLab run file: `swanlab.record.v1.Record` and the messages it
//! embeds, hand-written with `prost` derives (no protoc at build time). Field numbers and enum
//! values mirror the installed SDK's generated modules `swanlab/proto/swanlab/{record,run,
//! metric/column,metric/data,terminal,save}/v1/*_pb2.py` (swanlab==0.10.3). Fields are declared in
//! field-number order so that prost emits the same bytes as the SDK's protobuf runtime.

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `swanlab.record.v1.Record`: one entry of the run file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(int64, tag = "1")]
    pub num: i64,
    #[prost(message, optional, tag = "2")]
    pub timestamp: Option<Timestamp>,
    #[prost(oneof = "RecordType", tags = "10, 11, 12, 13, 14, 16, 20")]
    pub record_type: Option<RecordType>,
}

/// The `record_type` oneof of `Record`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum RecordType {
    #[prost(message, tag = "10")]
    Start(StartRecord),
    #[prost(message, tag = "11")]
    Finish(FinishRecord),
    #[prost(message, tag = "12")]
    Column(ColumnRecord),
    #[prost(message, tag = "13")]
    Scalar(ScalarRecord),
    #[prost(message, tag = "14")]
    Media(MediaRecord),
    #[prost(message, tag = "16")]
    Log(LogRecord),
    #[prost(message, tag = "20")]
    Save(SaveRecord),
}

/// `swanlab.run.v1.StartRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartRecord {
    #[prost(string, tag = "1")]
    pub project: String,
    #[prost(string, tag = "2")]
    pub workspace: String,
    #[prost(bool, tag = "3")]
    pub public: bool,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub description: String,
    #[prost(string, repeated, tag = "6")]
    pub tags: Vec<String>,
    #[prost(string, tag = "7")]
    pub group: String,
    #[prost(string, tag = "8")]
    pub job_type: String,
    #[prost(string, tag = "9")]
    pub color: String,
    #[prost(string, tag = "10")]
    pub id: String,
    #[prost(enumeration = "ResumeMode", tag = "11")]
    pub resume: i32,
    #[prost(message, optional, tag = "12")]
    pub started_at: Option<Timestamp>,
}

/// `swanlab.run.v1.FinishRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FinishRecord {
    #[prost(enumeration = "RunState", tag = "1")]
    pub state: i32,
    #[prost(string, tag = "2")]
    pub error: String,
    #[prost(message, optional, tag = "3")]
    pub finished_at: Option<Timestamp>,
}

/// `swanlab.metric.column.v1.YRange`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct YRange {
    #[prost(double, optional, tag = "1")]
    pub min: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub max: Option<f64>,
}

/// `swanlab.metric.column.v1.MetricColors`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricColors {
    #[prost(string, tag = "1")]
    pub light: String,
    #[prost(string, tag = "2")]
    pub dark: String,
}

/// `swanlab.metric.column.v1.ColumnRecord`: declares a chart column before its first value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ColumnRecord {
    #[prost(enumeration = "ColumnClass", tag = "1")]
    pub column_class: i32,
    #[prost(enumeration = "ColumnType", tag = "2")]
    pub column_type: i32,
    #[prost(string, tag = "3")]
    pub column_key: String,
    #[prost(string, tag = "4")]
    pub column_name: String,
    #[prost(string, tag = "5")]
    pub section_name: String,
    #[prost(enumeration = "SectionType", tag = "6")]
    pub section_type: i32,
    #[prost(message, optional, tag = "7")]
    pub y_range: Option<YRange>,
    #[prost(string, tag = "8")]
    pub chart_index: String,
    #[prost(string, tag = "9")]
    pub chart_name: String,
    #[prost(int32, tag = "10")]
    pub chart_type: i32,
    #[prost(string, tag = "11")]
    pub metric_name: String,
    #[prost(message, optional, tag = "12")]
    pub metric_colors: Option<MetricColors>,
    #[prost(string, optional, tag = "13")]
    pub x_axis: Option<String>,
    #[prost(bool, optional, tag = "14")]
    pub hidden: Option<bool>,
}

/// `swanlab.metric.data.v1.ScalarValue`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ScalarValue {
    #[prost(double, tag = "1")]
    pub number: f64,
}

/// `swanlab.metric.data.v1.ScalarRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScalarRecord {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(enumeration = "ColumnType", tag = "3")]
    pub r#type: i32,
    #[prost(message, optional, tag = "4")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, optional, tag = "5")]
    pub value: Option<ScalarValue>,
}

/// `swanlab.metric.data.v1.MediaItem`: one media file under `media/<type>/`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MediaItem {
    #[prost(string, tag = "1")]
    pub filename: String,
    #[prost(string, tag = "2")]
    pub sha256: String,
    #[prost(int64, tag = "3")]
    pub size: i64,
    #[prost(string, tag = "4")]
    pub caption: String,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub payload: Option<Vec<u8>>,
}

/// `swanlab.metric.data.v1.MediaValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MediaValue {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<MediaItem>,
}

/// `swanlab.metric.data.v1.MediaRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MediaRecord {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(enumeration = "ColumnType", tag = "3")]
    pub r#type: i32,
    #[prost(message, optional, tag = "4")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, optional, tag = "5")]
    pub value: Option<MediaValue>,
}

/// `swanlab.terminal.v1.LogRecord`: one console line; `epoch` is its 1-based line number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    #[prost(string, tag = "1")]
    pub line: String,
    #[prost(enumeration = "LogLevel", tag = "2")]
    pub level: i32,
    #[prost(message, optional, tag = "3")]
    pub timestamp: Option<Timestamp>,
    #[prost(int64, tag = "4")]
    pub epoch: i64,
}

/// `swanlab.save.v1.SaveRecord`: points at `files/config.yaml` and friends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SaveRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub source_path: String,
    #[prost(string, tag = "3")]
    pub target_path: String,
    #[prost(enumeration = "SavePolicy", tag = "4")]
    pub policy: i32,
    #[prost(enumeration = "SaveType", tag = "5")]
    pub r#type: i32,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub payload: Option<Vec<u8>>,
}

/// `swanlab.run.v1.RunState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RunState {
    Running = 0,
    Finished = 1,
    Crashed = 2,
    Aborted = 3,
}

/// `swanlab.run.v1.ResumeMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResumeMode {
    Never = 0,
    Allow = 1,
    Must = 2,
}

/// `swanlab.metric.column.v1.ColumnType` (only the kinds this crate logs are named in uploads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ColumnType {
    Unspecified = 0,
    Scalar = 1,
    Image = 2,
    Audio = 3,
    Text = 4,
    Video = 5,
    Echarts = 6,
    Object3d = 7,
    Molecule = 8,
    Html = 9,
}

/// `swanlab.metric.column.v1.ColumnClass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ColumnClass {
    Unspecified = 0,
    Custom = 1,
    System = 2,
}

/// `swanlab.metric.column.v1.SectionType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SectionType {
    Unspecified = 0,
    Pinned = 1,
    Hidden = 2,
    Public = 3,
    System = 4,
}

/// `swanlab.terminal.v1.LogLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LogLevel {
    Info = 0,
    Error = 1,
}

/// `swanlab.save.v1.SavePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SavePolicy {
    Now = 0,
    End = 1,
    Live = 2,
}

/// `swanlab.save.v1.SaveType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SaveType {
    Custom = 0,
    Config = 1,
    Metadata = 2,
    Requirements = 3,
    Conda = 4,
}

/// Record numbers the SDK reserves (`core_python/pkg/builder`): lifecycle and file records use
/// fixed negative numbers, data records count up from 1.
pub const START_RECORD_NUM: i64 = -1;
pub const FINISH_RECORD_NUM: i64 = -2;
pub const CONFIG_RECORD_NUM: i64 = -3;
