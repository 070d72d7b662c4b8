//! Plots decoded back from their PNG files: sizes, colours, where curves go
//! and which attention cells are bright.
#![cfg(feature = "plot")]

use std::path::Path;

use zeroformer::plot::{self, LineChart};
use zeroformer::tokenizer::{CharTokenizer, Tokenizer};
use zeroformer::train::Record;
use zeroformer::{Device, GptConfig, Tensor};

/// The first series' colour (matplotlib's tab10 blue) and the second's.
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
/// Viridis at 1 and at 0.
const YELLOW: [u8; 3] = [254, 232, 37];
const PURPLE: [u8; 3] = [68, 1, 84];

struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Image {
    fn read(path: &Path) -> Image {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        rgb.truncate(info.buffer_size());
        Image {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.width + x);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Pixels within a small distance of `color` (lines are antialiased).
    fn near(&self, color: [u8; 3]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for y in 0..self.height {
            for x in 0..self.width {
                let p = self.pixel(x, y);
                let d: i32 = (0..3).map(|c| (p[c] as i32 - color[c] as i32).abs()).sum();
                if d <= 30 {
                    found.push((x, y));
                }
            }
        }
        found
    }

    fn non_white(&self) -> usize {
        self.rgb.chunks(3).filter(|p| p != &[255, 255, 255]).count()
    }
}

fn falling_then_rising() -> Vec<(f64, f64)> {
    (0..=200)
        .map(|s| {
            let t = s as f64;
            (
                t,
                if s <= 100 {
                    5.0 - 0.04 * t
                } else {
                    1.0 + 0.02 * (t - 100.0)
                },
            )
        })
        .collect()
}

#[test]
fn loss_curves_draw_every_split_with_its_colour() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (0..50)
        .flat_map(|s| {
            let train = Record::new(s * 10)
                .split("train")
                .loss(4.0 / (1.0 + s as f64));
            let val = Record::new(s * 10)
                .split("val")
                .loss(4.5 / (1.0 + s as f64));
            [train, val]
        })
        .chain([Record::new(500).split("train").lr(1e-3)])
        .collect();
    let chart = plot::loss_chart(&records).unwrap();
    assert_eq!(chart.series_names().collect::<Vec<_>>(), ["train", "val"]);
    let path = dir.path().join("nested/loss.png");
    plot::loss_curves(&records, &path).unwrap();
    let image = Image::read(&path);
    assert_eq!((image.width, image.height), (800, 500));
    assert!(image.near(BLUE).len() > 300, "the train curve is drawn");
    assert!(image.near(ORANGE).len() > 300, "the val curve is drawn");
    // Text is rendered: black glyph pixels in the title band.
    let title_ink = (0..image.width)
        .flat_map(|x| (0..30).map(move |y| (x, y)))
        .filter(|&(x, y)| image.pixel(x, y).iter().all(|&c| c < 80))
        .count();
    assert!(
        title_ink > 20,
        "the title is drawn ({title_ink} dark pixels)"
    );
    // Nothing is left beside the file.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("nested"))
        .unwrap()
        .collect();
    assert_eq!(left.len(), 1);
}

/// The topmost pixel of the curve in column `x`.
fn curve_top(curve: &[(usize, usize)], x: usize) -> usize {
    curve
        .iter()
        .filter(|p| p.0 == x)
        .map(|p| p.1)
        .min()
        .unwrap_or_else(|| panic!("no curve pixel in column {x}"))
}

#[test]
fn the_curve_rises_where_the_loss_rises() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curve.png");
    LineChart::new("falls, then rises")
        .series("", falling_then_rising())
        .save(&path)
        .unwrap();
    let image = Image::read(&path);
    let curve = image.near(BLUE);
    let left = curve.iter().map(|p| p.0).min().unwrap();
    let right = curve.iter().map(|p| p.0).max().unwrap();
    let at = |f: f64| curve_top(&curve, left + ((right - left) as f64 * f) as usize);
    // Rows grow downwards: a falling loss goes down the image.
    assert!(at(0.1) < at(0.3) && at(0.3) < at(0.45), "falling half");
    assert!(at(0.6) > at(0.8) && at(0.8) > at(0.95), "rising half");
    // The minimum is in the middle, and the start is higher than the end
    // (loss 5 against 3).
    let lowest = (left..=right)
        .max_by_key(|&x| curve_top(&curve, x))
        .unwrap();
    let middle = (left + right) / 2;
    assert!(
        lowest.abs_diff(middle) <= (right - left) / 50,
        "lowest at {lowest}, middle {middle}"
    );
    assert!(at(0.0) < at(1.0));
}

#[test]
fn charts_survive_nan_infinite_and_non_positive_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut points = falling_then_rising();
    points[50].1 = f64::NAN;
    points[120].1 = f64::INFINITY;
    points.push((201.0, 0.0));
    for (log_x, log_y) in [(false, false), (true, false), (false, true), (true, true)] {
        let path = dir.path().join(format!("{log_x}-{log_y}.png"));
        LineChart::new("with holes")
            .log_x(log_x)
            .log_y(log_y)
            .series("a", points.clone())
            .series("flat", [(1.0, 2.0), (2.0, 2.0)])
            .save(&path)
            .unwrap();
        let image = Image::read(&path);
        assert!(image.near(BLUE).len() > 100);
    }
    // Nothing drawable at all still gives axes, not an error.
    let path = dir.path().join("empty.png");
    LineChart::new("empty")
        .log_y(true)
        .series("none", [(1.0, -1.0)])
        .save(&path)
        .unwrap();
    assert!(Image::read(&path).non_white() > 100);
}

/// Dark (text) pixels left of the plot area, below the title: the y
/// axis's tick labels.
fn y_tick_ink(image: &Image) -> usize {
    (0..60)
        .flat_map(|x| (45..image.height - 50).map(move |y| (x, y)))
        .filter(|&(x, y)| image.pixel(x, y).iter().all(|&c| c < 100))
        .count()
}

#[test]
fn log_axes_are_labelled_over_any_range() {
    // Plotters ticks a logarithmic axis from powers of ten: over 3.9..4.2
    // it would have none, so the axis is drawn linear, with labels.
    let dir = tempfile::tempdir().unwrap();
    for (name, lo, hi) in [
        ("narrow", 3.9, 4.2),
        ("decades", 0.01, 50.0),
        ("across 10", 8.0, 30.0),
    ] {
        let path = dir.path().join(format!("{name}.png"));
        let points = (0..=20).map(|i| (i as f64, lo + (hi - lo) * i as f64 / 20.0));
        LineChart::new(name)
            .log_y(true)
            .series("", points)
            .save(&path)
            .unwrap();
        let ink = y_tick_ink(&Image::read(&path));
        assert!(ink > 30, "{name}: {ink} dark pixels of tick labels");
    }
}

#[test]
fn panels_sit_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("panels.png");
    let a = LineChart::new("a")
        .series("x", falling_then_rising())
        .size(400, 300);
    let b = LineChart::new("b")
        .series("y", falling_then_rising())
        .size(500, 350);
    plot::save_panels(&[a, b], &path).unwrap();
    let image = Image::read(&path);
    assert_eq!((image.width, image.height), (900, 350));
    // Both panels draw their first series in blue.
    let blue = image.near(BLUE);
    assert!(blue.iter().any(|p| p.0 < 400) && blue.iter().any(|p| p.0 > 400));
}

#[test]
fn bad_plot_requests_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let no_loss = [Record::new(1).lr(0.1)];
    let err = plot::loss_curves(&no_loss, dir.path().join("x.png")).unwrap_err();
    assert!(err.to_string().contains("no curve"), "{err}");
    let err = LineChart::new("zero")
        .size(0, 10)
        .save(dir.path().join("y.png"))
        .unwrap_err();
    assert!(err.to_string().contains("0x10"), "{err}");
    assert!(plot::save_panels(&[], dir.path().join("z.png")).is_err());
    // A folder where the file should go: an error naming it, no temporary
    // file left behind.
    let blocked = dir.path().join("taken");
    std::fs::create_dir(&blocked).unwrap();
    let err = LineChart::new("t").save(&blocked).unwrap_err();
    assert!(err.to_string().contains("taken"), "{err}");
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "only the folder remains");
}

/// The colour of the cell (row, col) of a single map: found from the map's
/// top-left corner (the first viridis pixel) and its cell size.
fn cell_colours(image: &Image, n: usize) -> Vec<Vec<[u8; 3]>> {
    // The map is the block of viridis pixels left of the colour bar: its
    // left edge is the leftmost purple or yellow pixel.
    let viridis: Vec<(usize, usize)> = image
        .near(PURPLE)
        .into_iter()
        .chain(image.near(YELLOW))
        .collect();
    let left = viridis.iter().map(|p| p.0).min().unwrap();
    let top = viridis.iter().map(|p| p.1).min().unwrap();
    // The map's right edge: the last column of the row `top` that is viridis
    // before a white gap.
    let mut right = left;
    while right + 1 < image.width && image.pixel(right + 1, top) != [255, 255, 255] {
        right += 1;
    }
    let cell = (right + 1 - left) as f64 / n as f64;
    (0..n)
        .map(|r| {
            (0..n)
                .map(|c| {
                    let x = left + ((c as f64 + 0.5) * cell) as usize;
                    let y = top + ((r as f64 + 0.5) * cell) as usize;
                    image.pixel(x, y)
                })
                .collect()
        })
        .collect()
}

fn luminance(p: [u8; 3]) -> f64 {
    0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64
}

#[test]
fn an_identity_attention_map_is_brightest_on_the_diagonal() {
    let dir = tempfile::tempdir().unwrap();
    let n = 7;
    let mut eye = vec![0.0f32; n * n];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    let tokens = ["The", " cat", " sat", " on", " the", " mat", "\n"];
    let path = dir.path().join("eye.png");
    plot::attention_map(&Tensor::from_vec(eye, &[n, n]), &tokens, &tokens, &path).unwrap();
    let image = Image::read(&path);
    let cells = cell_colours(&image, n);
    for (r, row) in cells.iter().enumerate() {
        for (c, &colour) in row.iter().enumerate() {
            let expected = if r == c { YELLOW } else { PURPLE };
            assert_eq!(colour, expected, "cell ({r}, {c})");
        }
    }
}

#[test]
fn attention_maps_show_where_each_query_looks() {
    // Every query attends to the previous token (the first to itself),
    // with a little weight spread causally: the brightest cell of row r is
    // column r - 1, and nothing above the diagonal lights up.
    let dir = tempfile::tempdir().unwrap();
    let n = 9;
    let mut w = vec![0.0f32; n * n];
    for r in 0..n {
        let target = r.saturating_sub(1);
        for c in 0..=r {
            w[r * n + c] = if c == target {
                0.8
            } else {
                0.2 / r.max(1) as f32
            };
        }
    }
    let tokens: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let path = dir.path().join("previous.png");
    plot::attention_map(&Tensor::from_vec(w, &[n, n]), &tokens, &tokens, &path).unwrap();
    let cells = cell_colours(&Image::read(&path), n);
    for (r, row) in cells.iter().enumerate() {
        let brightest = (0..n)
            .max_by(|&a, &b| luminance(row[a]).total_cmp(&luminance(row[b])))
            .unwrap();
        assert_eq!(brightest, r.saturating_sub(1), "row {r}");
        for (c, &colour) in row.iter().enumerate().skip(r + 1) {
            assert_eq!(colour, PURPLE, "({r}, {c}) is above the diagonal");
        }
    }
}

#[test]
fn attention_grids_hold_every_layer_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let (layers, heads, t) = (3, 4, 5);
    let weights: Vec<Tensor> = (0..layers)
        .map(|_| Tensor::from_vec(vec![1.0 / t as f32; heads * t * t], &[1, heads, t, t]))
        .collect();
    let tokens = ["a", "b", "c", "d", "e"];
    let path = dir.path().join("grid.png");
    plot::attention_grid(&weights, &tokens, &tokens, &path).unwrap();
    let image = Image::read(&path);
    assert!(image.width > heads * 100 && image.height > layers * 100);
    assert!(image.width < 2500 && image.height < 2500);
    // Uniform weights 0.2 everywhere: the centre of the image is inside a
    // map, in viridis' colour for 0.2, between its ends.
    let uniform = image.pixel(image.width / 2, image.height / 2);
    assert!(luminance(uniform) > luminance(PURPLE) && luminance(uniform) < luminance(YELLOW));
    // [heads, t, t] without the batch axis draws the same image.
    let unbatched: Vec<Tensor> = weights.iter().map(|w| w.reshape(&[heads, t, t])).collect();
    let path2 = dir.path().join("grid2.png");
    plot::attention_grid(&unbatched, &tokens, &tokens, &path2).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&path2).unwrap()
    );
}

#[test]
fn tiny_and_nan_maps_still_draw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.png");
    // Two heads of one token: the maps are narrower than the title.
    let weights = Tensor::from_vec(vec![f32::NAN, 1.0], &[1, 2, 1, 1]);
    plot::attention_grid(&[weights], &["x"], &["x"], &path).unwrap();
    let image = Image::read(&path);
    // The whole title fits: ink in the title band, none at its edges.
    let ink = |x: usize, y: usize| image.pixel(x, y).iter().all(|&c| c < 100);
    let band = |xs: std::ops::Range<usize>| xs.flat_map(|x| (0..40).map(move |y| (x, y)));
    assert!(band(0..image.width).filter(|&(x, y)| ink(x, y)).count() > 50);
    let edges = band(0..4).chain(band(image.width - 4..image.width));
    assert_eq!(
        edges.filter(|&(x, y)| ink(x, y)).count(),
        0,
        "the title is cut"
    );
    // The NaN cell is grey, outside viridis.
    assert!(!image.near([190, 190, 190]).is_empty());
}

#[test]
#[should_panic(expected = "attention_grid: layer 1 has shape [1, 2, 3, 3]")]
fn attention_grid_rejects_mismatched_layers() {
    let a = Tensor::from_vec(vec![0.5; 27], &[1, 3, 3, 3]);
    let b = Tensor::from_vec(vec![0.5; 18], &[1, 2, 3, 3]);
    let _ = plot::attention_grid(&[a, b], &["x", "y", "z"], &["x", "y", "z"], "never.png");
}

#[test]
#[should_panic(expected = "attention_map: weights of shape [2, 3] for 3 query and 3 key tokens")]
fn attention_map_rejects_weights_that_do_not_fit_the_tokens() {
    let w = Tensor::from_vec(vec![0.5; 6], &[2, 3]);
    let _ = plot::attention_map(&w, &["x", "y", "z"], &["x", "y", "z"], "never.png");
}

#[test]
fn tokens_become_readable_labels() {
    assert_eq!(plot::token_label(" the\n"), "·the↵");
    assert_eq!(plot::token_label("\t\r"), "→␍");
    assert_eq!(
        plot::token_label(&"x".repeat(20)),
        format!("{}…", "x".repeat(16))
    );
}

#[test]
fn a_models_attention_is_drawn_for_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = CharTokenizer::from_text("to be or not\n");
    let config = GptConfig {
        vocab_size: tokenizer.vocab_size(),
        block_size: 8,
        n_layer: 2,
        n_head: 3,
        n_embd: 12,
        dropout: 0.0,
        bias: true,
        ..GptConfig::default()
    };
    let model = config.init(&Device::Cpu, 0).unwrap();
    let ids = tokenizer.encode("to be\n").unwrap();
    assert_eq!(
        plot::token_strings(&tokenizer, &ids),
        ["t", "o", " ", "b", "e", "\n"]
    );
    let path = dir.path().join("model.png");
    plot::gpt_attention(&model, &tokenizer, &ids, &path).unwrap();
    // A causal model's maps: the top row of the first map attends only to
    // the first token, so its first cell is viridis' 1 (yellow).
    let image = Image::read(&path);
    assert!(!image.near(YELLOW).is_empty());
    for bad in [vec![], vec![1; 9], vec![1, 99], vec![-1]] {
        let err = plot::gpt_attention(&model, &tokenizer, &bad, &path).unwrap_err();
        assert!(err.to_string().contains("token"), "{err}");
    }
    // One head: the same picture as attention_map of that head's weights.
    let head_path = dir.path().join("head.png");
    plot::gpt_attention_head(&model, &tokenizer, &ids, (1, 2), &head_path).unwrap();
    let input = Tensor::from_ids(ids.clone(), &[1, ids.len()]);
    let options = zeroformer::models::ForwardOptions::default().output_attentions();
    let weights = zeroformer::no_grad(|| model.forward(&input, options).attentions);
    let t = ids.len();
    let head = weights[1].narrow(1, 2, 1).reshape(&[t, t]);
    let labels = plot::token_strings(&tokenizer, &ids);
    let manual = dir.path().join("manual.png");
    plot::attention_map(&head, &labels, &labels, &manual).unwrap();
    assert_eq!(
        std::fs::read(&head_path).unwrap(),
        std::fs::read(&manual).unwrap()
    );
    for bad in [(2, 0), (0, 3)] {
        let err = plot::gpt_attention_head(&model, &tokenizer, &ids, bad, &head_path).unwrap_err();
        assert!(
            err.to_string().contains("layers 0..2 and heads 0..3"),
            "{err}"
        );
    }
    assert_eq!(plot::parse_head("1.2"), Some((1, 2)));
    assert_eq!(plot::parse_head("1,2"), None);
}
