//! Library side of the `webmoe` command line: loading a model file onto the GPU and the generation
//! loop, shared by the binary, the benchmarks and the integration tests.

#![warn(missing_docs)]
pub mod generate;
pub mod load;
