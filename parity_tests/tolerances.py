"""The project's one table of tolerances. Every test compares through these numbers.

Never loosen one to make a test pass: a failure at these bounds is a bug to find.
"""

# CS231n's rel_error(x, y) = max(|x - y| / max(1e-8, |x| + |y|)).
REL_ERROR = {
    # Same math in two implementations, float64: only summation-order round-off may differ.
    "twin_float64": 1e-10,
    # Analytic vs centered-difference gradient (h=1e-5), float64, inputs away from kinks.
    "numerical_layer": 1e-7,
    # Whole models (more ops chained) vs numerical gradient, float64.
    "numerical_model": 1e-6,
}

# torch.testing.assert_close tolerances (atol, rtol) per dtype for torch_impl vs builtin.
ASSERT_CLOSE = {
    "float64": {"atol": 1e-10, "rtol": 1e-9},
    # torch.testing's own defaults for float32.
    "float32": {"atol": 1e-5, "rtol": 1.3e-6},
}

# torch.autograd.gradcheck on float64 inputs.
GRADCHECK = {"eps": 1e-6, "atol": 1e-6, "rtol": 1e-4}

# Mixed precision (torch.autocast): products in the low dtype, accumulated in float32.
# Relative error ||a - ref|| / ||ref|| against a float64 reference; bfloat16 keeps 8 bits of
# mantissa (unit round-off 2^-9 ~ 2e-3), and one rounding of each operand and of the output
# stays within a few units of that.
MIXED_PRECISION_NORM_ERROR = {"bfloat16": 1e-2}
