//! Writes `op_tables.cuh`, the C header of the elementwise op tables
//! (src/backend/op_tables.rs) that every CUDA kernel file is compiled
//! after. Under the `cuda-sim` feature, also compiles every CUDA kernel
//! file of src/backend/cuda for the host, with the simulated GPU's shim
//! header, and writes the table that finds each kernel by name.

use std::fmt::Write as _;

// The op tables themselves: the same macros the crate reads.
include!("src/backend/op_tables.rs");

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/backend/op_tables.rs");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("op_tables.cuh"), op_tables_header()).expect("writing op_tables.cuh");
    #[cfg(feature = "cuda-sim")]
    sim::build();
}

/// The variants of an op table, in order.
macro_rules! variants {
    ($($(#[$doc:meta])* $op:ident $(($($param:ident = $example:expr),+))? = $name:literal
        $(=> $method:ident)?;)*) => {
        &[$(stringify!($op)),*]
    };
}

/// `GeluTanh` as `gelu_tanh`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// One X-macro per table, `ZF_UNARY_OPS(X)` expanding to `X(0, neg)
/// X(1, abs) ...`: each op's code (its row, as `UnaryOp::code` numbers it)
/// and the name of the functions that compute it (`zf_unary_neg`).
fn op_tables_header() -> String {
    let tables: [(&str, &[&str]); 3] = [
        ("ZF_UNARY_OPS", unary_ops!(variants)),
        ("ZF_BINARY_OPS", binary_ops!(variants)),
        ("ZF_COMPARE_OPS", compare_ops!(variants)),
    ];
    let mut header = String::from(
        "// Written by build.rs from src/backend/op_tables.rs: each elementwise op's\n\
         // code and name, for the kernels' switches (elementwise.cu).\n",
    );
    for (table, ops) in tables {
        write!(header, "#define {table}(X)").unwrap();
        for (code, op) in ops.iter().enumerate() {
            write!(header, " X({code}, {})", snake_case(op)).unwrap();
        }
        header.push('\n');
    }
    header
}

#[cfg(feature = "cuda-sim")]
mod sim {
    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};

    const CUDA_DIR: &str = "src/backend/cuda";

    /// The `.cu` files under `dir`, sorted, so the build does not depend on
    /// the order the file system lists them in.
    fn kernel_files(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("listing a directory").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                kernel_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "cu") {
                found.push(path);
            }
        }
    }

    /// The names of the kernels a file defines: each line of the form
    /// `extern "C" __global__ void NAME(`.
    fn kernel_names(source: &str) -> Vec<String> {
        source
            .lines()
            .filter_map(|line| {
                let rest = line
                    .trim_start()
                    .strip_prefix("extern \"C\" __global__ void ")?;
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest[name.len()..].starts_with('(').then_some(name)
            })
            .collect()
    }

    pub fn build() {
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
        let cuda = root.join(CUDA_DIR);
        let mut files = Vec::new();
        kernel_files(&cuda, &mut files);
        println!("cargo::rerun-if-changed={CUDA_DIR}");

        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            .include(cuda.join("sim"))
            .include(&cuda)
            .include(&out)
            .file(cuda.join("sim/runtime.cpp"))
            // Kernels compare floats exactly and test for NaN: no fast math.
            .flag_if_supported("-fno-fast-math")
            .warnings(true)
            .flag_if_supported("-Wno-unused-parameter")
            .flag_if_supported("-Wno-unused-function")
            // `#pragma unroll` is for NVRTC.
            .flag_if_supported("-Wno-unknown-pragmas");
        // Kernels are compiled optimised even in debug builds: the
        // simulated GPU runs whole training steps in the tests.
        build.opt_level(2);
        for header in ["sim/shim.h", "sim/runtime.cpp", "prelude.cuh"] {
            println!("cargo::rerun-if-changed={CUDA_DIR}/{header}");
        }

        let mut table = String::from(
            "// Written by build.rs: the kernels of each module, by name.\n\
             unsafe extern \"C\" {\n",
        );
        let mut modules = String::new();
        for file in &files {
            println!("cargo::rerun-if-changed={}", file.display());
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a UTF-8 file name");
            let source = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let names = kernel_names(&source);
            // The wrapper: the shim, the prelude and op tables every kernel
            // file is compiled after on the GPU too, the file, then an entry
            // and a table for the driver.
            let mut wrapper = format!(
                "#include \"shim.h\"\n#include \"prelude.cuh\"\n#include \"op_tables.cuh\"\n#include \"{}\"\n",
                file.display()
            );
            for name in &names {
                writeln!(
                    wrapper,
                    "static void zf_sim_entry_{name}(void** args) {{ zf_sim_invoke({name}, args); }}"
                )
                .unwrap();
            }
            writeln!(wrapper, "static const zf_sim_kernel zf_sim_table[] = {{").unwrap();
            for name in &names {
                writeln!(wrapper, "    {{\"{name}\", zf_sim_entry_{name}}},").unwrap();
            }
            writeln!(
                wrapper,
                "    {{nullptr, nullptr}}}};\n\
                 extern \"C\" const zf_sim_kernel* zf_sim_module_{stem}() {{ return zf_sim_table; }}"
            )
            .unwrap();
            let wrapper_path = out.join(format!("zf_sim_{stem}.cpp"));
            std::fs::write(&wrapper_path, wrapper).expect("writing a kernel wrapper");
            build.file(&wrapper_path);
            writeln!(
                table,
                "    fn zf_sim_module_{stem}() -> *const super::SimKernel;"
            )
            .unwrap();
            writeln!(modules, "    (\"{stem}\", zf_sim_module_{stem}),").unwrap();
        }
        table += "}\n\n/// Each module's name and its table of kernels.\n\
                  pub(super) static MODULES: &[(&str, unsafe extern \"C\" fn() -> *const super::SimKernel)] = &[\n";
        table += &modules;
        table += "];\n";
        std::fs::write(out.join("sim_modules.rs"), table).expect("writing the module table");
        build.compile("zeroformer_sim_kernels");
    }
}
