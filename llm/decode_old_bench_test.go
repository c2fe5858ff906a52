package llm

func decodeReplyForBench(raw []byte) ([]Sample, *failure) {
	reply, err := decodeChatReply(raw)
	if err != nil {
		return nil, malformed(raw, err)
	}
	return decodeSamples(reply)
}
