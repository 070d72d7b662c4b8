//! PNG plots of what training and a model do: loss curves from a metrics
//! file ([`loss_curves`]), any line chart ([`LineChart`], [`save_panels`]),
//! and attention weights as heatmaps ([`attention_map`] for one head,
//! [`attention_grid`] for every layer and head, [`gpt_attention`] to run a
//! model on a text and draw them all).
//!
//! Drawing needs no system library: plotters' bitmap backend draws, text
//! is rasterised by `ab_glyph` from the DejaVu Sans font compiled into the
//! crate, and the `png` crate encodes. Files are written atomically (a
//! temporary file renamed into place), like checkpoints.
//!
//! ```no_run
//! use zeroformer::plot;
//! use zeroformer::train::read_metrics;
//!
//! let records = read_metrics("out/metrics.jsonl")?;
//! plot::loss_curves(&records, "out/loss.png")?;
//! // The same chart with a logarithmic loss axis:
//! plot::loss_chart(&records)?.log_y(true).save("out/loss-log.png")?;
//! # Ok::<(), zeroformer::Error>(())
//! ```

mod chart;
mod heatmap;
mod model;

pub use chart::{LineChart, loss_chart, loss_curves, save_panels};
pub use heatmap::{attention_grid, attention_map, token_label};
pub use model::{gpt_attention, gpt_attention_head, parse_head, token_strings};

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::checkpoint::write_atomically;
use crate::{Error, Result};

/// The drawing surface every plot draws on.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// What a drawing step returns: plotters' errors, boxed, to be reported
/// with the file being drawn.
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// The widest or tallest image a plot may be, in pixels.
const MAX_SIDE: u32 = 8192;

/// The font family every text style names: plotters looks fonts up by it.
const FONT: &str = "sans-serif";

/// Makes DejaVu Sans the `sans-serif` font plotters draws text with (every
/// style falls back to it).
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a font compiled into the binary; a failure here is
        // a broken build, not bad input.
        let regular = dejavu::sans::regular();
        if plotters::style::register_font(FONT, FontStyle::Normal, regular).is_err() {
            panic!("plot: the embedded DejaVu Sans font does not parse");
        }
    });
}

/// Draws a `width` x `height` image with `draw` and writes it to `path` as
/// a PNG, atomically.
fn render_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::InvalidConfig(format!(
            "plot {}: an image of {width}x{height} pixels; each side must be 1 to {MAX_SIDE}",
            path.display()
        )));
    }
    register_fonts();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&area)
            .and_then(|()| area.present().map_err(Into::into))
            .map_err(|e| Error::InvalidData(format!("drawing {}: {e}", path.display())))?;
    }
    write_atomically(path, &encode_png(&rgb, width, height)?)
}

/// An RGB image as PNG bytes.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let encoding_error = |e: png::EncodingError| Error::InvalidData(format!("encoding a PNG: {e}"));
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encoding_error)?;
    writer.write_image_data(rgb).map_err(encoding_error)?;
    writer.finish().map_err(encoding_error)?;
    Ok(bytes)
}

/// A text style of the plots' font at `size` pixels.
fn text(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font())
}

/// A tick label: short, without float noise (`0.30000000000000004` is
/// `0.3`), scientific only for very large or small magnitudes.
fn format_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs();
    if !(1e-3..1e5).contains(&magnitude) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{:.4}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_short() {
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(30000.0), "30000");
        assert_eq!(format_number(1e6), "1e6");
        assert_eq!(format_number(2.5e-5), "2.5e-5");
        assert_eq!(format_number(-1.25), "-1.25");
        assert_eq!(format_number(0.0), "0");
    }
}
