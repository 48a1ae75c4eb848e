//! reshape (and flatten): the same bytes under another shape. The planner gives the output
//! its input's bytes, so at run time it costs nothing.

use super::Check;
use crate::error::Error;

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    c.unused(true, true, true, true)?;
    c.same_quant()?;
    let (i, o) = (c.node.input.shape, c.node.output_info.shape);
    if i.len() != o.len() {
        return Err(c.shape_mismatch("output shape (must have the input's size)", i, o));
    }
    Ok(())
}
