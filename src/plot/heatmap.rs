//! Attention weights as heatmaps: one head with its tokens on both axes,
//! or every layer x head of a model as small multiples (bertviz's "model
//! view" as a still image). Weights are probabilities, so every map shares
//! one viridis scale from 0 to 1 and maps compare at a glance.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Area, DrawResult, format_number, register_fonts, render_png, text};
use crate::{Result, Tensor};

/// The side a single map aims for, in pixels.
const MAP_SIDE: usize = 560;
/// The side every small multiple of a grid aims for, in pixels.
const GRID_SIDE: usize = 1500;
/// Smallest cell, in pixels, that gets a token label of its own.
const LABELLED_CELL: usize = 9;
/// Pixels between the small multiples of a grid.
const GAP: usize = 10;
/// The colour bar's width and its ticks' column.
const BAR: usize = 16;
const BAR_TICKS: usize = 48;
/// Width of a grid's row headers (`layer 11`) and height of its column
/// headers (`head 11`).
const HEADER: usize = 70;
/// Height of an image's title.
const TITLE: usize = 40;
/// The colour of a NaN weight: outside the colour map, so it shows.
const NAN_GREY: RGBColor = RGBColor(190, 190, 190);

/// A token as a readable axis label: whitespace that would be invisible
/// becomes a visible mark (`·` for a space, `↵` for a newline, `→` for a
/// tab) and long tokens are cut to 16 characters.
///
/// ```
/// assert_eq!(zeroformer::plot::token_label(" the\n"), "·the↵");
/// ```
pub fn token_label(token: &str) -> String {
    let mut label: String = token
        .chars()
        .map(|c| match c {
            ' ' => '·',
            '\n' => '↵',
            '\t' => '→',
            '\r' => '␍',
            c if c.is_control() => '�',
            c => c,
        })
        .take(16)
        .collect();
    if token.chars().count() > 16 {
        label.push('…');
    }
    label
}

/// Draws one head's attention weights `[queries, keys]` as a heatmap: a row
/// per query token (what attends), a column per key token (what is
/// attended to), viridis from 0 to 1 with a colour bar.
///
/// Panics when the weights are not a matrix of `query_tokens.len()` rows
/// and `key_tokens.len()` columns. A causal model's map is lower
/// triangular: row i attends to keys 0..=i.
///
/// ```no_run
/// use zeroformer::prelude::*;
/// # let config = GptConfig { vocab_size: 8, block_size: 8, n_layer: 1, n_head: 2, n_embd: 8, dropout: 0.0, bias: true, ..GptConfig::default() };
/// # let model = config.init(&Device::Cpu, 0)?;
/// let ids = Tensor::from_ids(vec![1, 2, 3], &[1, 3]);
/// let options = zeroformer::models::ForwardOptions::default().output_attentions();
/// let weights = model.forward(&ids, options).attentions;
/// // Layer 0, batch 0, head 1.
/// let head = weights[0].narrow(0, 0, 1).narrow(1, 1, 1).reshape(&[3, 3]);
/// let tokens = ["a", "b", "c"];
/// zeroformer::plot::attention_map(&head, &tokens, &tokens, "head.png")?;
/// # Ok::<(), zeroformer::Error>(())
/// ```
pub fn attention_map<Q: AsRef<str>, K: AsRef<str>>(
    weights: &Tensor,
    query_tokens: &[Q],
    key_tokens: &[K],
    path: impl AsRef<Path>,
) -> Result<()> {
    let (q, k) = (query_tokens.len(), key_tokens.len());
    assert!(
        weights.shape() == [q, k],
        "attention_map: weights of shape {:?} for {q} query and {k} key tokens",
        weights.shape()
    );
    let grid = Grid {
        maps: vec![weights.to_vec()],
        rows: 1,
        cols: 1,
        queries: query_tokens
            .iter()
            .map(|t| token_label(t.as_ref()))
            .collect(),
        keys: key_tokens.iter().map(|t| token_label(t.as_ref())).collect(),
        title: "Attention weights".to_string(),
    };
    grid.save(path.as_ref(), MAP_SIDE)
}

/// Draws every layer x head of a model for one input as small multiples: a
/// row per layer, a column per head, each map as in [`attention_map`].
/// `layers` holds one tensor per layer, `[heads, queries, keys]` or
/// `[1, heads, queries, keys]` (what [`Gpt::forward`] returns with
/// `output_attentions` for a batch of one); token labels are drawn when the cells are
/// large enough to hold them.
///
/// Panics when the layers' shapes differ or do not fit the tokens.
///
/// [`Gpt::forward`]: crate::Gpt::forward
pub fn attention_grid<Q: AsRef<str>, K: AsRef<str>>(
    layers: &[Tensor],
    query_tokens: &[Q],
    key_tokens: &[K],
    path: impl AsRef<Path>,
) -> Result<()> {
    let (q, k) = (query_tokens.len(), key_tokens.len());
    assert!(!layers.is_empty(), "attention_grid: no layers to draw");
    let heads = match layers[0].shape() {
        [1, h, _, _] | [h, _, _] => *h,
        other => panic!(
            "attention_grid: layer 0 has shape {other:?}; expected [heads, {q}, {k}] or [1, heads, {q}, {k}]"
        ),
    };
    let mut maps = Vec::with_capacity(layers.len() * heads);
    for (i, layer) in layers.iter().enumerate() {
        let shape = layer.shape();
        assert!(
            shape == [1, heads, q, k] || shape == [heads, q, k],
            "attention_grid: layer {i} has shape {shape:?}; expected [{heads}, {q}, {k}] or [1, {heads}, {q}, {k}] like layer 0"
        );
        let values = layer.to_vec();
        maps.extend(values.chunks(q * k).map(<[f32]>::to_vec));
    }
    let grid = Grid {
        maps,
        rows: layers.len(),
        cols: heads,
        queries: query_tokens
            .iter()
            .map(|t| token_label(t.as_ref()))
            .collect(),
        keys: key_tokens.iter().map(|t| token_label(t.as_ref())).collect(),
        title: format!(
            "Attention weights: {} x {} (rows attend to columns)",
            count(layers.len(), "layer"),
            count(heads, "head")
        ),
    };
    grid.save(path.as_ref(), GRID_SIDE)
}

/// `1 layer`, `4 layers`.
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// Attention maps laid out in rows (layers) and columns (heads).
struct Grid {
    /// `rows * cols` maps, row-major, each `queries x keys` values.
    maps: Vec<Vec<f32>>,
    rows: usize,
    cols: usize,
    queries: Vec<String>,
    keys: Vec<String>,
    title: String,
}

/// Where everything of a [`Grid`] goes, in pixels.
struct Layout {
    cell: usize,
    label_size: f64,
    /// Every how many tokens a label is drawn (1: all).
    label_every: usize,
    map_left: usize,
    map_top: usize,
    map_w: usize,
    map_h: usize,
    width: usize,
    height: usize,
}

impl Grid {
    fn single(&self) -> bool {
        self.rows * self.cols == 1
    }

    fn layout(&self, side: usize) -> Layout {
        let (q, k) = (self.queries.len().max(1), self.keys.len().max(1));
        let across = self.rows.max(self.cols) * q.max(k);
        let cell = (side / across).clamp(1, 48);
        let label_size = (cell as f64 * 0.7).clamp(9.0, 15.0);
        let label_every = LABELLED_CELL.div_ceil(cell);
        let widest = |labels: &[String]| {
            let style = text(label_size);
            labels
                .iter()
                .step_by(label_every)
                .filter_map(|l| style.font.box_size(l).ok())
                .map(|(w, _)| w as usize)
                .max()
                .unwrap_or(0)
        };
        let headers = if self.single() { 0 } else { HEADER };
        let map_left = 12 + headers + widest(&self.queries) + 8;
        let map_top = TITLE + headers / 2;
        let (map_w, map_h) = (k * cell, q * cell);
        let maps_w = self.cols * map_w + (self.cols - 1) * GAP;
        let maps_h = self.rows * map_h + (self.rows - 1) * GAP;
        let bar_h = maps_h.max(120);
        let title_w = text(18.0)
            .font
            .box_size(&self.title)
            .map_or(0, |(w, _)| w as usize);
        Layout {
            cell,
            label_size,
            label_every,
            map_left,
            map_top,
            map_w,
            map_h,
            width: (map_left + maps_w + 20 + BAR + BAR_TICKS).max(title_w + 24),
            height: (map_top + bar_h).max(map_top + maps_h + 8 + widest(&self.keys)) + 12,
        }
    }

    fn save(&self, path: &Path, side: usize) -> Result<()> {
        register_fonts();
        let layout = self.layout(side);
        let size = (layout.width as u32, layout.height as u32);
        render_png(path, size, |area| self.draw(area, &layout))
    }

    fn draw(&self, area: &Area<'_>, l: &Layout) -> DrawResult {
        area.fill(&WHITE)?;
        let centre = |h| Pos::new(h, VPos::Center);
        area.draw(&Text::new(
            self.title.clone(),
            (l.width as i32 / 2, TITLE as i32 / 2),
            text(18.0).pos(centre(HPos::Center)),
        ))?;
        let (q, k) = (self.queries.len(), self.keys.len());
        for (index, map) in self.maps.iter().enumerate() {
            let (row, col) = (index / self.cols, index % self.cols);
            let left = l.map_left + col * (l.map_w + GAP);
            let top = l.map_top + row * (l.map_h + GAP);
            for (i, &w) in map.iter().enumerate() {
                let (x, y) = (
                    left + (i % k.max(1)) * l.cell,
                    top + (i / k.max(1)) * l.cell,
                );
                let color = match w.is_nan() {
                    true => NAN_GREY,
                    false => ViridisRGB::get_color_normalized(w.clamp(0.0, 1.0), 0.0, 1.0),
                };
                area.draw(&Rectangle::new(
                    [
                        (x as i32, y as i32),
                        ((x + l.cell) as i32, (y + l.cell) as i32),
                    ],
                    color.filled(),
                ))?;
            }
            if !self.single() && col == 0 {
                area.draw(&Text::new(
                    format!("layer {row}"),
                    (12, (top + l.map_h / 2) as i32),
                    text(14.0).pos(centre(HPos::Left)),
                ))?;
            }
            if !self.single() && row == 0 {
                area.draw(&Text::new(
                    format!("head {col}"),
                    ((left + l.map_w / 2) as i32, (top - 12) as i32),
                    text(14.0).pos(centre(HPos::Center)),
                ))?;
            }
            let labels = text(l.label_size);
            if col == 0 && (self.single() || l.cell >= LABELLED_CELL) {
                let x = (left - 6) as i32;
                for (i, token) in self.queries.iter().enumerate().step_by(l.label_every) {
                    let y = (top + i * l.cell + l.cell / 2) as i32;
                    area.draw(&Text::new(
                        token.as_str(),
                        (x, y),
                        labels.pos(centre(HPos::Right)),
                    ))?;
                }
            }
            if row == self.rows - 1 && (self.single() || l.cell >= LABELLED_CELL) {
                let y = (top + q * l.cell + 6) as i32;
                let rotated = labels.transform(FontTransform::Rotate270);
                for (i, token) in self.keys.iter().enumerate().step_by(l.label_every) {
                    let x = (left + i * l.cell + l.cell / 2) as i32;
                    area.draw(&Text::new(
                        token.as_str(),
                        (x, y),
                        rotated.pos(centre(HPos::Right)),
                    ))?;
                }
            }
        }
        let maps_h = self.rows * l.map_h + (self.rows - 1) * GAP;
        self.draw_colour_bar(area, l, maps_h.max(120))
    }

    /// A vertical viridis gradient from 1 (top) to 0 (bottom), with ticks.
    fn draw_colour_bar(&self, area: &Area<'_>, l: &Layout, height: usize) -> DrawResult {
        let left = (l.width - BAR - BAR_TICKS) as i32;
        let top = l.map_top as i32;
        for y in 0..height {
            let value = 1.0 - y as f32 / (height - 1) as f32;
            let color = ViridisRGB::get_color_normalized(value, 0.0, 1.0);
            let y = top + y as i32;
            area.draw(&Rectangle::new(
                [(left, y), (left + BAR as i32, y + 1)],
                color.filled(),
            ))?;
        }
        for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let y = top + ((1.0 - tick) * (height - 1) as f64).round() as i32;
            let x = left + BAR as i32;
            area.draw(&PathElement::new(vec![(x, y), (x + 4, y)], BLACK))?;
            area.draw(&Text::new(
                format_number(tick),
                (x + 7, y),
                text(12.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}
