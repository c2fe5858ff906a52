package metric_test

import (
	"fmt"

	"github.com/selfplay/selfplay/metric"
)

func ExampleMakePair() {
	samples := []metric.Sample{
		{Index: 0, Content: "Paris.", Tokens: 2, LogProb: -1.0, Reward: 2.5},
		{Index: 1, Content: "I think it is Lyon.", Tokens: 6, LogProb: -9.0, Reward: -1.0},
		{Index: 2, Content: "The capital is Paris.", Tokens: 5, LogProb: -2.5, Reward: 2.0},
	}
	pair, reason, err := metric.MakePair(samples, metric.DefaultBeta)
	if err != nil || reason != "" {
		fmt.Println("no pair:", reason, err)
		return
	}
	// m_ex = 2.5 − (−1.0); m_im = −1.0/2 − (−9.0/6) = −0.5 + 1.5.
	fmt.Printf("chosen %d, rejected %d, m_ex %.2f, m_im %.2f\n", pair.Chosen, pair.Rejected, pair.ExplicitMargin, pair.ImplicitMargin)
	// Output: chosen 0, rejected 1, m_ex 3.50, m_im 1.00
}

func ExampleSelect() {
	items := []metric.Item{
		{ID: 1, ExplicitMargin: 7, ImplicitMargin: 1.375},
		{ID: 2, ExplicitMargin: 1, ImplicitMargin: -0.875},
		{ID: 3, ExplicitMargin: 5, ImplicitMargin: 0.625},
		{ID: 4, ExplicitMargin: 3, ImplicitMargin: -1.0},
		{ID: 5, ExplicitMargin: 4, ImplicitMargin: 1.125},
	}
	spec := metric.DefaultSpec() // alignment potential, w = 1, top 40%
	scored, err := metric.Score(items, spec)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := metric.Select(scored, spec); err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range scored {
		fmt.Printf("id %d  AP %+.2f  rank %d  selected %v\n", s.ID, s.AlignmentPotential, s.Rank, s.Selected)
	}
	// Output:
	// id 1  AP +0.00  rank 2  selected true
	// id 2  AP -1.00  rank 5  selected false
	// id 3  AP +2.00  rank 1  selected true
	// id 4  AP -0.50  rank 3  selected false
	// id 5  AP -0.50  rank 4  selected false
}
