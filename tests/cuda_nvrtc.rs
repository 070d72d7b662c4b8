//! Every CUDA kernel file compiles with NVRTC for sm_80 and sm_90, as the
//! GPU driver compiles it: the check that needs libnvrtc (the PyPI wheel
//! nvidia-cuda-nvrtc-cu12 is enough) but no GPU. Skipped with a printed
//! reason when libnvrtc cannot be loaded, unless
//! `ZEROFORMER_REQUIRE_NVRTC=1`. With `ZEROFORMER_PTX_DIR` set, the PTX is
//! written there (`<dir>/sm_80/<file>.ptx`) for ptxas's register report.
#![cfg(feature = "cuda")]

use zeroformer::Error;
use zeroformer::backend::cuda::{MODULES, compile_all};

#[test]
fn cuda_kernels_compile_with_nvrtc_for_sm_80_and_sm_90() {
    let required = std::env::var("ZEROFORMER_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let out = std::env::var_os("ZEROFORMER_PTX_DIR").map(std::path::PathBuf::from);
    for sm in ["80", "90"] {
        // PTX for the virtual architecture, and a cubin for the real one:
        // the second is what the driver loads on a GPU of that kind.
        let ptx = match compile_all(&format!("compute_{sm}")) {
            Err(Error::CudaUnavailable(why)) if !required => {
                eprintln!("skipping: {why} (set ZEROFORMER_REQUIRE_NVRTC=1 to fail instead)");
                return;
            }
            other => other.unwrap_or_else(|e| panic!("{e}")),
        };
        assert_eq!(ptx.len(), MODULES.len());
        let cubins = compile_all(&format!("sm_{sm}")).unwrap_or_else(|e| panic!("{e}"));
        for ((name, ptx), (_, cubin)) in ptx.iter().zip(&cubins) {
            let text = String::from_utf8_lossy(ptx);
            assert!(
                text.contains(&format!(".target sm_{sm}")),
                "{name}.cu: {text:.200}"
            );
            // Every kernel of the file is an entry of its PTX.
            for line in MODULES
                .iter()
                .find(|m| m.name == *name)
                .unwrap()
                .source
                .lines()
            {
                if let Some(rest) = line.strip_prefix("extern \"C\" __global__ void ") {
                    let kernel = rest.split('(').next().unwrap();
                    assert!(
                        text.contains(&format!(".entry {kernel}(")),
                        "{name}.cu: no entry {kernel}"
                    );
                }
            }
            assert_eq!(
                &cubin[..4],
                b"\x7fELF",
                "{name}.cu: sm_{sm} gives a cubin (ELF)"
            );
            if let Some(dir) = &out {
                let dir = dir.join(format!("sm_{sm}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("{name}.ptx")), ptx).unwrap();
            }
        }
    }
}
