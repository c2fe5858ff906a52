package tinylm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/selfplay/selfplay/metric"
)

// Loss names a preference-optimisation objective of TrainPreference.
type Loss string

// The losses TrainPreference implements. For a pair with chosen y_w and
// rejected y_l, lp(y) = log π_θ(y|x) summed over the response's tokens and
// ref(y) the same under the frozen reference:
//
//	dpo          −log σ(β·h),  h = [lp(y_w) − ref(y_w)] − [lp(y_l) − ref(y_l)]
//	simpo        −log σ(β·[lp(y_w)/|y_w| − lp(y_l)/|y_l|] − γ)   (no reference)
//	epsilon-dpo  −log σ(β_i·h),  β_i = β/(1 + ε·s_i) from metric.EpsilonDPOStep
const (
	LossDPO        Loss = "dpo"
	LossSimPO      Loss = "simpo"
	LossEpsilonDPO Loss = "epsilon-dpo"
)

// Losses lists the valid Loss values.
var Losses = []Loss{LossDPO, LossSimPO, LossEpsilonDPO}

// ParseLoss returns the Loss named s, or an error listing the valid names.
func ParseLoss(s string) (Loss, error) {
	if slices.Contains(Losses, Loss(s)) {
		return Loss(s), nil
	}
	return "", fmt.Errorf("unknown loss %q: want dpo, simpo or epsilon-dpo", s)
}

// DefaultBeta is the β a loss uses when PreferenceOptions.Beta is 0: 0.1
// for dpo (TRL's default), 2.0 for simpo (Meng et al.'s setting; its β
// scales a per-token average), and metric.DefaultBeta (0.01, Lee et al.)
// for epsilon-dpo.
func DefaultBeta(l Loss) float64 {
	switch l {
	case LossSimPO:
		return 2.0
	case LossEpsilonDPO:
		return metric.DefaultBeta
	default:
		return 0.1
	}
}

// DefaultPreferenceLearningRate is the Adam step of TrainPreference, 0.003,
// a third of TrainMLE's. Three DPO epochs over 48 self-play pairs of the
// built-in model at 0.01 already make its replies on held-out prompts
// about twice as long and end fewer of them (82% reach <|end|>, against
// 99% before); at 0.03 almost none do (3%).
const DefaultPreferenceLearningRate = 0.003

// PreferenceOptions controls TrainPreference and PairLoss.
type PreferenceOptions struct {
	// Loss is the objective; required.
	Loss Loss
	// Beta is β (for epsilon-dpo the initial base β); 0 means
	// DefaultBeta(Loss).
	Beta float64
	// Epsilon is ε of epsilon-dpo, in (0, 1); 0 means
	// metric.DefaultEpsilon (0.01). Ignored by the other losses.
	Epsilon float64
	// Gamma is SimPO's target reward margin γ ≥ 0 (nats, on the β-scaled
	// length-normalised scale); 0 means no margin. Ignored by the other
	// losses.
	Gamma float64
	// Epochs over the pairs; default 3.
	Epochs int
	// LearningRate of Adam; default DefaultPreferenceLearningRate.
	LearningRate float64
	// BatchSize in pairs per optimiser step; default 8.
	BatchSize int
	// Seed shuffles the pairs; the same seed, data and models give the very
	// same trained weights.
	Seed uint64
	// Progress, when set, is called after every epoch.
	Progress func(EpochStats)
}

func (o PreferenceOptions) withDefaults() (PreferenceOptions, error) {
	if _, err := ParseLoss(string(o.Loss)); err != nil {
		return o, err
	}
	if o.Beta == 0 {
		o.Beta = DefaultBeta(o.Loss)
	}
	if o.Epsilon == 0 {
		o.Epsilon = metric.DefaultEpsilon
	}
	if o.Epochs == 0 {
		o.Epochs = 3
	}
	if o.LearningRate == 0 {
		o.LearningRate = DefaultPreferenceLearningRate
	}
	if o.BatchSize == 0 {
		o.BatchSize = 8
	}
	switch {
	case !(o.Beta > 0) || math.IsInf(o.Beta, 1):
		return o, fmt.Errorf("beta %g must be a positive finite number", o.Beta)
	case !(o.Epsilon > 0 && o.Epsilon < 1):
		return o, fmt.Errorf("epsilon %g must be in (0, 1)", o.Epsilon)
	case !(o.Gamma >= 0) || math.IsInf(o.Gamma, 1):
		return o, fmt.Errorf("gamma %g must be a finite number ≥ 0", o.Gamma)
	case o.Epochs < 0:
		return o, fmt.Errorf("epochs %d must not be negative", o.Epochs)
	case !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 1):
		return o, fmt.Errorf("learning rate %g must be a positive finite number", o.LearningRate)
	case o.BatchSize < 0:
		return o, fmt.Errorf("batch size %d must not be negative", o.BatchSize)
	}
	return o, nil
}

// EpochStats summarise one epoch of TrainPreference, measured on each batch
// before its update (as TRL logs them).
type EpochStats struct {
	// Epoch counts from 1.
	Epoch int
	// Loss is the mean loss over the pairs.
	Loss float64
	// RewardAccuracy is the fraction of pairs whose implicit reward prefers
	// the chosen response: h > 0 for dpo and epsilon-dpo, a higher
	// length-normalised log-probability for simpo.
	RewardAccuracy float64
	// RewardMargin is the mean β-scaled implicit reward margin: β·h (β_i·h
	// for epsilon-dpo), or β·[lp(y_w)/|y_w| − lp(y_l)/|y_l|] for simpo.
	RewardMargin float64
	// Beta is the base β after the epoch (it moves only under epsilon-dpo).
	Beta float64
	// Relaxed and Tightened count the epsilon-dpo pairs whose step s was +1
	// (β_i < β) and −1 (β_i > β).
	Relaxed, Tightened int
}

// PairResult is the loss of one pair and what went into it.
type PairResult struct {
	// Loss is the pair's loss.
	Loss float64
	// Margin is the β-scaled implicit reward margin (see EpochStats).
	Margin float64
	// Correct reports whether the implicit reward prefers the chosen response.
	Correct bool
	// Beta is the KL weight used: β, or β_i under epsilon-dpo.
	Beta float64
	// Step is epsilon-dpo's s ∈ {−1, 0, +1}; 0 for the other losses.
	Step int
}

// PairLoss returns the loss of pair p under policy (and ref, which simpo
// does not use and may then be nil) for the options' loss with base β =
// opts.Beta, and adds scale·∂loss/∂θ to g unless g is nil. The gradient is
// exact: it flows through the policy's log-probabilities by
// AccumulateLogProbGrad; the reference is frozen, and epsilon-dpo's β_i is a
// piecewise-constant function of θ (s_i only changes where the perturbed
// logits swap order), so it is held constant as in Lee et al.'s trainer.
// Not safe for concurrent use with the same g.
func PairLoss(policy, ref *Model, p PreferencePair, opts PreferenceOptions, g *Grad, scale float64) (PairResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return PairResult{}, err
	}
	if err := checkPair(policy, p); err != nil {
		return PairResult{}, err
	}
	if opts.Loss != LossSimPO {
		if ref == nil {
			return PairResult{}, fmt.Errorf("loss %s needs a reference model", opts.Loss)
		}
		if err := sameVocabulary(policy, ref); err != nil {
			return PairResult{}, err
		}
	}
	return pairLoss(policy, ref, p, nil, opts, opts.Beta, g, scale)
}

// pairLoss is PairLoss with validated options and base β beta. refLPs,
// when not nil, are the reference's log π(y_w|x) and log π(y_l|x), which
// dpo would otherwise compute (they never change during training).
func pairLoss(policy, ref *Model, p PreferencePair, refLPs *[2]float64, opts PreferenceOptions, beta float64, g *Grad, scale float64) (PairResult, error) {
	var res PairResult
	// u is the argument of the sigmoid; dw and dl are ∂u/∂lp(y_w) and
	// ∂u/∂lp(y_l).
	var u, dw, dl float64
	switch opts.Loss {
	case LossSimPO:
		lw, ll := sumLogProbs(policy, p.Prompt, p.Chosen), sumLogProbs(policy, p.Prompt, p.Rejected)
		nw, nl := float64(len(p.Chosen)), float64(len(p.Rejected))
		res.Margin = beta * (lw/nw - ll/nl)
		res.Correct = lw/nw > ll/nl
		res.Beta = beta
		u, dw, dl = res.Margin-opts.Gamma, beta/nw, -beta/nl
	case LossDPO:
		if refLPs == nil {
			refLPs = &[2]float64{sumLogProbs(ref, p.Prompt, p.Chosen), sumLogProbs(ref, p.Prompt, p.Rejected)}
		}
		h := sumLogProbs(policy, p.Prompt, p.Chosen) - refLPs[0] - (sumLogProbs(policy, p.Prompt, p.Rejected) - refLPs[1])
		res.Beta = beta
		res.Margin, res.Correct = beta*h, h > 0
		u, dw, dl = beta*h, beta, -beta
	case LossEpsilonDPO:
		st, err := metric.EpsilonDPOStep(sequenceOf(policy, ref, p.Prompt, p.Chosen), sequenceOf(policy, ref, p.Prompt, p.Rejected), beta, opts.Epsilon)
		if err != nil {
			return PairResult{}, err
		}
		res.Beta, res.Step = st.Beta, st.Step
		res.Margin, res.Correct = st.Beta*st.Logit, st.Logit > 0
		u, dw, dl = st.Beta*st.Logit, st.Beta, -st.Beta
	}
	res.Loss = softplus(-u)
	if g != nil {
		// ∂loss/∂u = −σ(−u); the chain rule through lp(y_w) and lp(y_l).
		d := -sigmoid(-u) * scale
		policy.AccumulateLogProbGrad(g, p.Prompt, p.Chosen, d*dw)
		policy.AccumulateLogProbGrad(g, p.Prompt, p.Rejected, d*dl)
	}
	return res, nil
}

// TrainPreference trains policy in place on pairs with the options' loss,
// using Adam on shuffled minibatches, and returns the statistics of each
// epoch. ref is the frozen reference (dpo and epsilon-dpo; nil is allowed
// for simpo) and must share the policy's vocabulary; it may be a Clone of
// the initial policy but not the policy itself. Under epsilon-dpo the base
// β moves after every batch to metric.NextBeta of the batch's β_i (DESIGN
// §1.3). The result is deterministic given the data, models and Seed.
func TrainPreference(policy, ref *Model, pairs []PreferencePair, opts PreferenceOptions) ([]EpochStats, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if len(pairs) == 0 {
		return nil, errors.New("train: no preference pairs")
	}
	if opts.Loss != LossSimPO {
		if ref == nil {
			return nil, fmt.Errorf("train: loss %s needs a reference model", opts.Loss)
		}
		if ref == policy {
			return nil, errors.New("train: the reference must not be the policy being trained (pass a Clone)")
		}
		if err := sameVocabulary(policy, ref); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	for i, p := range pairs {
		if err := checkPair(policy, p); err != nil {
			return nil, fmt.Errorf("train: pair %d: %w", i, err)
		}
	}
	var refLPs [][2]float64
	if opts.Loss == LossDPO {
		refLPs = make([][2]float64, len(pairs))
		for i, p := range pairs {
			refLPs[i] = [2]float64{sumLogProbs(ref, p.Prompt, p.Chosen), sumLogProbs(ref, p.Prompt, p.Rejected)}
		}
	}
	g := NewGrad(policy)
	opt := newAdam(policy, opts.LearningRate)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x7072_6566))
	order := make([]int, len(pairs))
	for i := range order {
		order[i] = i
	}
	beta := opts.Beta
	var hist []EpochStats
	for ep := 1; ep <= opts.Epochs; ep++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		st := EpochStats{Epoch: ep}
		for start := 0; start < len(order); start += opts.BatchSize {
			batch := order[start:min(start+opts.BatchSize, len(order))]
			g.Zero()
			betas := make([]float64, 0, len(batch))
			for _, i := range batch {
				var cached *[2]float64
				if refLPs != nil {
					cached = &refLPs[i]
				}
				r, err := pairLoss(policy, ref, pairs[i], cached, opts, beta, g, 1/float64(len(batch)))
				if err != nil {
					return nil, fmt.Errorf("train: pair %d: %w", i, err)
				}
				st.add(r)
				betas = append(betas, r.Beta)
			}
			opt.step(policy, g, 0)
			if opts.Loss == LossEpsilonDPO {
				beta = metric.NextBeta(beta, betas)
			}
		}
		st.finish(len(pairs))
		st.Beta = beta
		hist = append(hist, st)
		if opts.Progress != nil {
			opts.Progress(st)
		}
	}
	if err := policy.validate(); err != nil {
		return hist, fmt.Errorf("train: diverged: %w (lower the learning rate)", err)
	}
	return hist, nil
}

// PreferenceLoss returns the mean loss, reward accuracy and reward margin
// of pairs under policy and ref with base β = opts.Beta, without training:
// the numbers TrainPreference reports, for a model before or after it.
func PreferenceLoss(policy, ref *Model, pairs []PreferencePair, opts PreferenceOptions) (EpochStats, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return EpochStats{}, fmt.Errorf("preference loss: %w", err)
	}
	if len(pairs) == 0 {
		return EpochStats{}, errors.New("preference loss: no preference pairs")
	}
	st := EpochStats{Beta: opts.Beta}
	for i, p := range pairs {
		r, err := PairLoss(policy, ref, p, opts, nil, 0)
		if err != nil {
			return EpochStats{}, fmt.Errorf("preference loss: pair %d: %w", i, err)
		}
		st.add(r)
	}
	st.finish(len(pairs))
	return st, nil
}

func (st *EpochStats) add(r PairResult) {
	st.Loss += r.Loss
	st.RewardMargin += r.Margin
	if r.Correct {
		st.RewardAccuracy++
	}
	switch r.Step {
	case 1:
		st.Relaxed++
	case -1:
		st.Tightened++
	}
}

func (st *EpochStats) finish(pairs int) {
	n := float64(pairs)
	st.Loss /= n
	st.RewardMargin /= n
	st.RewardAccuracy /= n
}

// ResponseLogits returns the policy's full-vocabulary logits z at every
// response position: row i (length V) is the distribution of response[i]
// given the prompt and response[:i], with the conditioning of
// ResponseLogProbs, so log softmax(row i)[response[i]] is its i-th value.
// The prompt must be non-empty and every id in the vocabulary.
func (m *Model) ResponseLogits(promptIDs, responseIDs []int) ([][]float64, error) {
	if err := m.checkIDs(promptIDs); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if err := m.checkIDs(responseIDs); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if len(promptIDs) == 0 {
		return nil, errors.New("empty prompt: the first response token has no previous token")
	}
	return m.responseLogits(promptIDs, responseIDs), nil
}

func (m *Model) responseLogits(promptIDs, responseIDs []int) [][]float64 {
	c := newCond(m)
	for _, id := range promptIDs {
		c.push(id)
	}
	out := make([][]float64, len(responseIDs))
	prev := promptIDs[len(promptIDs)-1]
	for i, id := range responseIDs {
		out[i] = m.LogitsAt(c.ctx, prev, make([]float64, m.V()))
		c.push(id)
		prev = id
	}
	return out
}

// sequenceOf is a response with the policy and reference logits behind
// each of its tokens, as metric.EpsilonDPOStep takes it.
func sequenceOf(policy, ref *Model, prompt, response []int) metric.Sequence {
	return metric.Sequence{Tokens: response, Policy: policy.responseLogits(prompt, response), Reference: ref.responseLogits(prompt, response)}
}

// sumLogProbs is log π(response|prompt) for ids already checked.
func sumLogProbs(m *Model, prompt, response []int) float64 {
	lps, _ := m.ResponseLogProbs(prompt, response)
	var s float64
	for _, x := range lps {
		s += x
	}
	return s
}

func checkPair(m *Model, p PreferencePair) error {
	switch {
	case len(p.Prompt) == 0:
		return errors.New("empty prompt")
	case len(p.Chosen) == 0 || len(p.Rejected) == 0:
		return errors.New("empty chosen or rejected response (it should at least hold <|end|>)")
	}
	for _, ids := range [][]int{p.Prompt, p.Chosen, p.Rejected} {
		if err := m.checkIDs(ids); err != nil {
			return err
		}
	}
	return nil
}

func sameVocabulary(a, b *Model) error {
	if a.V() != b.V() || !slices.Equal(a.Tok.words, b.Tok.words) {
		return fmt.Errorf("the policy and reference vocabularies differ (%d and %d words): both must come from the same base model", a.V(), b.V())
	}
	return nil
}

// softplus is log(1 + e^x), computed without overflow: −log σ(u) = softplus(−u).
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}
