//! A Keras-like summary table of a [`Resolved`] graph.

use crate::graph::{Op, Pads, Resolved};

/// `831398` → `"831,398"`.
pub(crate) fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn pads(p: &Pads) -> String {
    if *p == Pads::default() {
        String::new()
    } else {
        format!(" pad {},{},{},{}", p.top, p.left, p.bottom, p.right)
    }
}

/// A short description of an op, e.g. `conv 3x3/2 16 pad 0,0,1,1`.
fn describe(op: &Op) -> String {
    match op {
        Op::Input => "input".into(),
        Op::Conv {
            out_channels,
            kernel,
            stride,
            pads: p,
            depthwise,
            bias,
            ..
        } => format!(
            "{} {}x{}/{}x{}{}{}{}",
            if *depthwise { "depthwise" } else { "conv" },
            kernel[0],
            kernel[1],
            stride[0],
            stride[1],
            if *depthwise {
                String::new()
            } else {
                format!(" {out_channels}")
            },
            pads(p),
            if *bias { "" } else { " no bias" }
        ),
        Op::BatchNorm { .. } => "batch_norm".into(),
        Op::Relu => "relu".into(),
        Op::Relu6 => "relu6".into(),
        Op::MaxPool {
            kernel,
            stride,
            pads: p,
        }
        | Op::AvgPool {
            kernel,
            stride,
            pads: p,
        } => format!(
            "{} {}x{}/{}x{}{}",
            if matches!(op, Op::MaxPool { .. }) {
                "max_pool"
            } else {
                "avg_pool"
            },
            kernel[0],
            kernel[1],
            stride[0],
            stride[1],
            pads(p)
        ),
        Op::GlobalAvgPool => "global_avg_pool".into(),
        Op::Dropout { rate } => format!("dropout {rate}"),
        Op::Flatten => "flatten".into(),
        Op::Dense { out_features, .. } => format!("dense {out_features}"),
        Op::Add => "add".into(),
    }
}

impl Resolved {
    /// The table: one row per node (path, op, output shape, params, MACs, inputs when a node
    /// does not read the one before it), then the totals.
    pub fn summary(&self) -> String {
        let header = ["layer", "op", "output", "params", "MACs", "reads"];
        let rows: Vec<[String; 6]> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let reads = if n.inputs.is_empty() || n.inputs == [i - 1] {
                    String::new()
                } else {
                    let ids: Vec<String> = n.inputs.iter().map(|i| format!("#{i}")).collect();
                    ids.join(" + ")
                };
                [
                    format!("#{i} {}", n.path),
                    describe(&n.op),
                    n.output.to_string(),
                    group_digits(n.params.total()),
                    group_digits(n.macs),
                    reads,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: [&str; 6]| {
            let mut s = String::new();
            for (col, (cell, w)) in cells.iter().zip(widths).enumerate() {
                // Text columns left-aligned, counts right-aligned.
                if col == 3 || col == 4 {
                    s.push_str(&format!("{cell:>w$}  "));
                } else {
                    s.push_str(&format!("{cell:<w$}  "));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let rule = "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)) + "\n";
        let mut out = format!(
            "Model: {} (input {}, {} classes)\n",
            self.name, self.input, self.classes
        );
        out.push_str(&rule);
        out.push_str(&line(header));
        out.push_str(&rule);
        for row in &rows {
            out.push_str(&line(row.each_ref().map(String::as_str)));
        }
        out.push_str(&rule);
        let p = self.params();
        out.push_str(&format!("Total params: {}\n", group_digits(p.total())));
        out.push_str(&format!(
            "Trainable params: {}\n",
            group_digits(p.trainable)
        ));
        out.push_str(&format!(
            "Non-trainable params: {} (batch norm running mean and variance)\n",
            group_digits(p.non_trainable)
        ));
        out.push_str(&format!("Total MACs: {}\n", group_digits(self.macs())));
        out
    }
}
