//! PNG plots: training curves and confusion matrices.
//!
//! Drawn with plotters into an RGB buffer, encoded with the `image` crate and written
//! atomically. Text uses DejaVu Sans, embedded in the binary (see `assets/`), so the plots
//! look the same on every machine and need no system fonts.

use std::io::Cursor;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use thiserror::Error;

use crate::artifacts::atomic_write;
use crate::train::EpochMetrics;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// A plot could not be drawn or written.
#[derive(Debug, Error)]
pub enum PlotError {
    /// Nothing to plot.
    #[error("nothing to plot: {0}")]
    Empty(&'static str),
    /// The data does not have the shape the plot needs.
    #[error("cannot plot: {0}")]
    Shape(String),
    /// Drawing failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The target file.
        path: String,
        /// The drawing backend's message.
        message: String,
    },
    /// Encoding or writing the PNG failed.
    #[error("writing {path}: {message}")]
    Write {
        /// The target file.
        path: String,
        /// The underlying message.
        message: String,
    },
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a fixed asset; failing to parse it is a build defect, caught by the tests.
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if register_font(FAMILY, style, FONT).is_err() {
                panic!("the embedded DejaVu Sans does not parse");
            }
        }
    });
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        path: path.display().to_string(),
        message,
    }
}

/// Render `draw` on a `w`x`h` white canvas and write it to `path` as PNG.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    register();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| draw_err(path)(e.to_string()))?;
        draw(&root).map_err(draw_err(path))?;
        root.present().map_err(|e| draw_err(path)(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer matches its size");
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| PlotError::Write {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    atomic_write(path, &png).map_err(|e| PlotError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);

/// One panel of [`training_curves`]: `train` and `val` against epoch.
fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    legend: SeriesLabelPosition,
    epochs: &[f64],
    train: &[f64],
    val: &[f64],
) -> Result<(), String> {
    let e = |x: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let all = train.iter().chain(val).copied();
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let last = *epochs.last().unwrap_or(&1.0);
    // A little room either side so the first and last markers are not cut by the axes.
    let x_range = 0.7..last + 0.3;
    // As many decimals as the range needs: "98.5", "0.042", not "98.500".
    let decimals = match hi - lo {
        r if r >= 20.0 => 0,
        r if r >= 2.0 => 1,
        r if r >= 0.2 => 2,
        r if r >= 0.02 => 3,
        _ => 4,
    };

    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .x_labels(epochs.len().clamp(2, 12) + 1)
        // Only whole epochs get a label.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;

    for (name, ys, color) in [
        ("train", train, TRAIN_COLOR),
        ("validation", val, VAL_COLOR),
    ] {
        let pts: Vec<(f64, f64)> = epochs.iter().copied().zip(ys.iter().copied()).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 16))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Loss and accuracy (train and validation) against epoch, side by side, as a PNG.
pub fn training_curves(history: &[EpochMetrics], path: &Path) -> Result<(), PlotError> {
    if history.is_empty() {
        return Err(PlotError::Empty("no finished epoch"));
    }
    let epochs: Vec<f64> = history.iter().map(|m| m.epoch as f64).collect();
    let col = |f: fn(&EpochMetrics) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let (tl, vl) = (col(|m| m.train_loss), col(|m| m.val_loss));
    let (ta, va) = (col(|m| m.train_acc * 100.0), col(|m| m.val_acc * 100.0));
    render(path, (1400, 560), |root| {
        let panels = root.split_evenly((1, 2));
        // Losses fall and accuracies rise: their legends go where the curves usually are not.
        let (upper, lower) = (
            SeriesLabelPosition::UpperRight,
            SeriesLabelPosition::LowerRight,
        );
        curve_panel(
            &panels[0],
            "Loss",
            "cross-entropy",
            upper,
            &epochs,
            &tl,
            &vl,
        )?;
        curve_panel(
            &panels[1],
            "Accuracy",
            "accuracy (%)",
            lower,
            &epochs,
            &ta,
            &va,
        )?;
        Ok(())
    })
}

/// Cell colour for a count that is `t` (0..=1) of the row's total: white → blue.
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0).sqrt();
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// A confusion matrix (`matrix[true][predicted]`, one row and column per class, labelled
/// with `classes`) as a heat map with the counts written in the cells, coloured per row (share
/// of that true class), as a PNG. Cells shrink with the class count (60 px up to 10 classes);
/// counts are written while a cell is at least 30 px wide, names while it is at least 12.
pub fn confusion_matrix(
    matrix: &[Vec<u32>],
    classes: &[String],
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    let n = matrix.len();
    if n == 0 || classes.len() != n || matrix.iter().any(|row| row.len() != n) {
        return Err(PlotError::Shape(format!(
            "a confusion matrix needs one square row per class ({n} rows, {} class names)",
            classes.len()
        )));
    }
    let total: u64 = matrix.iter().flatten().map(|&c| c as u64).sum();
    let correct: u64 = (0..n).map(|i| matrix[i][i] as u64).sum();
    let (left, top) = (110i32, 136i32);
    let cell = (600 / n as i32).clamp(2, 60);
    let (w, h) = (
        (left + cell * n as i32 + 50) as u32,
        (top + cell * n as i32 + 84) as u32,
    );
    // Long class names are cut to what fits beside (rows) or above (columns) the grid.
    let label = |c: usize, chars: usize| -> String { classes[c].chars().take(chars).collect() };
    let column_chars = (cell as usize / 9).max(1);
    render(path, (w, h), |root| {
        let e = |x: plotters::drawing::DrawingAreaErrorKind<_>| x.to_string();
        let center = Pos::new(HPos::Center, VPos::Center);
        let text = |s: &str, x: i32, y: i32, size: u32, color: &'static RGBColor| {
            Text::new(
                s.to_string(),
                (x, y),
                TextStyle::from((FAMILY, size).into_font())
                    .color(color)
                    .pos(center),
            )
        };
        let grid = cell * n as i32;
        root.draw(&text(title, w as i32 / 2, 28, 24, &BLACK))
            .map_err(e)?;
        let acc = if total > 0 {
            format!(
                "{correct} / {total} correct ({:.2}%)",
                100.0 * correct as f64 / total as f64
            )
        } else {
            "no samples".to_string()
        };
        root.draw(&text(&acc, w as i32 / 2, 58, 17, &RGBColor(60, 60, 60)))
            .map_err(e)?;
        root.draw(&text("predicted", left + grid / 2, top - 48, 18, &BLACK))
            .map_err(e)?;
        root.draw(&Text::new(
            "true".to_string(),
            (30, top + grid / 2),
            TextStyle::from((FAMILY, 18).into_font().transform(FontTransform::Rotate270))
                .color(&BLACK)
                .pos(center),
        ))
        .map_err(e)?;

        for (t, row) in matrix.iter().enumerate() {
            let row_total: u32 = row.iter().sum();
            let y0 = top + t as i32 * cell;
            if cell >= 12 {
                root.draw(&text(&label(t, 8), left - 40, y0 + cell / 2, 16, &BLACK))
                    .map_err(e)?;
            }
            for (p, &count) in row.iter().enumerate() {
                let x0 = left + p as i32 * cell;
                let share = if row_total > 0 {
                    count as f64 / row_total as f64
                } else {
                    0.0
                };
                let fill = heat(share);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    fill.filled(),
                ))
                .map_err(e)?;
                let ink: &'static RGBColor = if share > 0.35 { &WHITE } else { &BLACK };
                let size = if count >= 10_000 { 13 } else { 16 };
                if cell < 30 {
                    continue;
                }
                root.draw(&text(
                    &count.to_string(),
                    x0 + cell / 2,
                    y0 + cell / 2,
                    size,
                    ink,
                ))
                .map_err(e)?;
            }
        }
        for p in (0..n).filter(|_| cell >= 12) {
            let x = left + p as i32 * cell + cell / 2;
            root.draw(&text(&label(p, column_chars), x, top - 18, 16, &BLACK))
                .map_err(e)?;
        }
        // Grid lines and frame.
        let line = RGBColor(200, 200, 200);
        for i in 0..=n as i32 {
            let z = i * cell;
            root.draw(&PathElement::new(
                vec![(left + z, top), (left + z, top + grid)],
                line,
            ))
            .map_err(e)?;
            root.draw(&PathElement::new(
                vec![(left, top + z), (left + grid, top + z)],
                line,
            ))
            .map_err(e)?;
        }
        root.draw(&Rectangle::new(
            [(left, top), (left + grid, top + grid)],
            BLACK.stroke_width(2),
        ))
        .map_err(e)?;
        root.draw(&text(
            "cell colour: share of the true class (row)",
            left + grid / 2,
            top + grid + 30,
            15,
            &RGBColor(90, 90, 90),
        ))
        .map_err(e)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(path: &Path) -> (u32, u32) {
        let img = image::open(path).expect("a readable PNG");
        (img.width(), img.height())
    }

    #[test]
    fn curves_and_confusion_are_pngs() {
        let tmp = tempfile::tempdir().unwrap();
        let history: Vec<EpochMetrics> = (1..=10)
            .map(|e| {
                let f = e as f64;
                EpochMetrics {
                    epoch: e,
                    train_loss: 0.5 / f,
                    train_acc: 1.0 - 0.1 / f,
                    val_loss: 0.4 / f + 0.01,
                    val_acc: 1.0 - 0.08 / f,
                    seconds: 30.0,
                }
            })
            .collect();
        let curves = tmp.path().join("curves.png");
        training_curves(&history, &curves).unwrap();
        assert_eq!(png_size(&curves), (1400, 560));
        training_curves(&history[..1], &tmp.path().join("one.png")).unwrap();

        let mut m = vec![vec![0u32; 10]; 10];
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = 980 + i as u32;
            row[(i + 3) % 10] = i as u32 * 2;
        }
        let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let cm = tmp.path().join("cm.png");
        confusion_matrix(&m, &digits, "float model, MNIST test set", &cm).unwrap();
        assert_eq!(png_size(&cm), (760, 820));
        // 100 classes: 6 px cells, no text in them; a name list of the wrong length is refused.
        let names: Vec<String> = (0..100).map(|c| format!("class{c}")).collect();
        let big = vec![vec![1u32; 100]; 100];
        confusion_matrix(&big, &names, "100 classes", &tmp.path().join("big.png")).unwrap();
        assert_eq!(png_size(&tmp.path().join("big.png")), (760, 820));
        assert!(matches!(
            confusion_matrix(&m, &names, "t", &tmp.path().join("bad.png")),
            Err(PlotError::Shape(_))
        ));
        assert!(matches!(
            training_curves(&[], &tmp.path().join("x.png")),
            Err(PlotError::Empty(_))
        ));
    }
}
