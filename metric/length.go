package metric

import (
	"fmt"
	"math"
)

// LengthControl says whether the explicit margin is taken from the rewards
// as they are or with the iteration's length effect removed.
type LengthControl string

// The length controls (DESIGN §1.4).
const (
	// LengthNone scores the raw explicit margin: the paper's metric.
	LengthNone LengthControl = "none"
	// LengthResidual scores ResidualMargin with the slope of the
	// iteration's FitLength.
	LengthResidual LengthControl = "residual"
)

// LengthControls lists the controls in documentation order.
var LengthControls = []LengthControl{LengthNone, LengthResidual}

// LengthFit is the least-squares line reward ≈ Intercept + Slope·tokens
// over an iteration's responses.
type LengthFit struct {
	// N is the number of responses fitted.
	N int
	// Defined is false when the slope is not: fewer than two responses,
	// or every response of the same length. Slope, Intercept and R2 are
	// then 0, and the raw margin is scored whatever the control says.
	Defined bool
	// Slope is the reward per token.
	Slope float64
	// Intercept is the fitted reward of an empty reply.
	Intercept float64
	// R2 is the share of the rewards' variance the line explains, in
	// [0, 1]; 0 when every reward is equal (there is nothing to explain).
	R2 float64
}

// FitLength fits the rewards on the token counts by least squares (tokens[i]
// and rewards[i] belong to response i; the slices have equal length and
// finite rewards). It works on deviations from the means, with compensated
// sums, in two passes: slope = Sxy/Sxx, intercept = ȳ − slope·x̄, R² =
// Sxy²/(Sxx·Syy). store's SQL computes the same fit with PostgreSQL's
// regr_slope, regr_intercept and regr_r2 (a one-pass Youngs–Cramer
// accumulator); the two agree to a relative 1e-9 (store's tests).
// Whether every length (or every reward) is equal is decided from the
// extremes, exactly, never from a rounded variance.
func FitLength(tokens []int, rewards []float64) (LengthFit, error) {
	if len(tokens) != len(rewards) {
		return LengthFit{}, fmt.Errorf("%d token counts but %d rewards", len(tokens), len(rewards))
	}
	n := len(tokens)
	fit := LengthFit{N: n}
	if n == 0 {
		return fit, nil
	}
	loX, hiX := tokens[0], tokens[0]
	loY, hiY, maxAbs := rewards[0], rewards[0], 0.0
	for i := range n {
		if !finite(rewards[i]) {
			return LengthFit{}, fmt.Errorf("response %d: reward must be finite, got %g", i, rewards[i])
		}
		loX, hiX = min(loX, tokens[i]), max(hiX, tokens[i])
		loY, hiY = min(loY, rewards[i]), max(hiY, rewards[i])
		maxAbs = max(maxAbs, math.Abs(rewards[i]))
	}
	if loX == hiX {
		return fit, nil
	}
	// Rewards scaled by a power of two into [-1, 1] (exact, as in
	// momentsOf): sums of rewards near the float64 limit cannot overflow.
	scale := Scale(maxAbs)
	var sx, sy compensated
	for i := range n {
		sx.add(float64(tokens[i]))
		sy.add(rewards[i] * scale)
	}
	mx, my := sx.value()/float64(n), sy.value()/float64(n)
	var sxx, sxy, syy compensated
	for i := range n {
		dx, dy := float64(tokens[i])-mx, rewards[i]*scale-my
		sxx.add(dx * dx)
		sxy.add(dx * dy)
		syy.add(dy * dy)
	}
	slope := sxy.value() / sxx.value()
	fit.Defined = true
	fit.Slope = slope / scale
	fit.Intercept = (my - slope*mx) / scale
	if loY != hiY {
		fit.R2 = min(1, sxy.value()*sxy.value()/(sxx.value()*syy.value()))
	}
	return fit, nil
}

// ResidualMargin is the explicit margin with the length effect removed:
// (r_w − slope·t_w) − (r_l − slope·t_l), computed as m_ex − slope·(t_w − t_l)
// so that store's SQL gives the same float64, bit for bit. It may be
// negative: a chosen reply that won by its length alone.
func ResidualMargin(explicit, slope float64, chosenTokens, rejectedTokens int) float64 {
	return explicit - slope*float64(chosenTokens-rejectedTokens)
}

// LengthDrift is the relative growth of the mean chosen length of the
// selected pairs from one iteration (prev) to the next (cur): cur/prev − 1.
// It is 0 when prev is not positive (no earlier selection to compare).
func LengthDrift(prev, cur float64) float64 {
	if !(prev > 0) || math.IsInf(prev, 0) {
		return 0
	}
	return cur/prev - 1
}
