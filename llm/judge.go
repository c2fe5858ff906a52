package llm

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	openai "github.com/sashabaranov/go-openai"
)

// The grading prompt of the judge reward. The conversation is shown in the
// plain layout so any judge model can read it whatever its own template.
const (
	judgeSystemPrompt = "You grade answers written by an AI assistant. You are strict, " +
		"impartial and brief: you reply with a single number and nothing else."
	judgeUserPrompt = "Below is a conversation followed by the assistant's reply. Grade the reply " +
		"from 1 to 10, where 1 means wrong, unhelpful or off-topic and 10 means correct, " +
		"complete, clear and to the point. Judge correctness first, then how well it serves " +
		"the request, then clarity. Length alone earns nothing.\n\n" +
		"=== Conversation ===\n{conversation}\n" +
		"=== Reply to grade ===\n{reply}\n" +
		"=== End of reply ===\n\n" +
		"Your grade (a number from 1 to 10):"
)

// judgeMaxTokens leaves room for "Grade: 7/10" but not for an essay.
const judgeMaxTokens = 16

// judgeMessages builds the judge's chat for one reply.
func judgeMessages(msgs []Message, reply string) []Message {
	conv := strings.TrimRight(TemplatePlain.Render(msgs, false), "\n")
	user := strings.NewReplacer("{conversation}", conv, "{reply}", reply).Replace(judgeUserPrompt)
	return []Message{{Role: "system", Content: judgeSystemPrompt}, {Role: "user", Content: user}}
}

var (
	judgeOutOfTen = regexp.MustCompile(`(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b`)
	judgeLabelled = regexp.MustCompile(`(?i)\b(?:grade|score|rating)\s*(?:is|of)?\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)`)
	judgeNumber   = regexp.MustCompile(`\d+(?:\.\d+)?`)
)

// parseJudgeScore reads the grade from a judge's reply: "n/10" or "n out of
// 10" first, then "grade/score/rating: n", then the first number in 1–10.
// It reports false when the reply holds no grade in [1, 10].
func parseJudgeScore(reply string) (float64, bool) {
	inRange := func(s string) (float64, bool) {
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil && v >= 1 && v <= 10
	}
	for _, re := range []*regexp.Regexp{judgeOutOfTen, judgeLabelled} {
		if m := re.FindStringSubmatch(reply); m != nil {
			if v, ok := inRange(m[1]); ok {
				return v, true
			}
		}
	}
	for _, s := range judgeNumber.FindAllString(reply, -1) {
		if v, ok := inRange(s); ok {
			return v, true
		}
	}
	return 0, false
}

// judge asks the judge model for one reply's grade, greedily.
func (r *Reward) judge(ctx context.Context, msgs []Message, reply string) (float64, error) {
	req := openai.ChatCompletionRequest{
		Model:     r.t.ep.Model,
		Messages:  toOpenAIMessages(judgeMessages(msgs, reply)),
		MaxTokens: judgeMaxTokens,
	}
	fields := map[string]any{"temperature": 0.0}
	for k, v := range r.t.opts.extras {
		fields[k] = v
	}
	var score float64
	err := r.chat.create(ctx, req, fields, func(reply *chatReply) *failure {
		if len(reply.Choices) == 0 {
			return permanentf("judge returned an empty choice list")
		}
		text := reply.Choices[0].Content
		v, ok := parseJudgeScore(text)
		if !ok {
			return permanentf("judge reply holds no grade from 1 to 10: %q", excerpt([]byte(text)))
		}
		score = v
		return nil
	})
	if err != nil {
		return 0, err
	}
	return score, nil
}
