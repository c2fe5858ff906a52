package corpus

// topic is one everyday subject: the things people ask about (objects), what
// they do with them (verbs, base form), related things, qualities, and a few
// fixed tips. Every word here ends up in the vocabulary.
type topic struct {
	name    string
	objects []string
	verbs   []string
	things  []string
	adjs    []string
	tips    []string
}

var topics = []topic{
	{
		name:    "cooking",
		objects: []string{"pasta", "rice", "soup", "eggs", "bread", "chicken", "beans", "noodles", "pancakes", "vegetables"},
		verbs:   []string{"cook", "boil", "bake", "fry", "season", "stir"},
		things:  []string{"salt", "pepper", "butter", "oil", "garlic", "onion", "pan", "pot", "oven", "water"},
		adjs:    []string{"soft", "crispy", "salty", "fresh", "warm", "tender"},
		tips:    []string{"taste the food before you add more salt .", "let the pan get hot before the oil goes in .", "keep a lid on the pot so the water boils faster ."},
	},
	{
		name:    "gardening",
		objects: []string{"tomatoes", "roses", "herbs", "seeds", "lettuce", "flowers", "carrots", "strawberries", "lawn", "garden"},
		verbs:   []string{"plant", "water", "prune", "grow", "weed", "feed"},
		things:  []string{"soil", "compost", "sunlight", "shade", "shovel", "hose", "mulch", "roots", "leaves", "pots"},
		adjs:    []string{"green", "healthy", "dry", "wet", "sunny", "strong"},
		tips:    []string{"water early in the morning so the leaves dry during the day .", "a thin layer of mulch keeps the soil moist .", "check the leaves for bugs once a week ."},
	},
	{
		name:    "sleep",
		objects: []string{"sleep", "bedtime", "naps", "dreams", "mattress", "pillow", "insomnia", "bedroom", "alarm", "rest"},
		verbs:   []string{"relax", "sleep", "rest", "wake", "breathe", "unwind"},
		things:  []string{"darkness", "blanket", "screens", "caffeine", "routine", "quiet", "curtains", "tea", "lamp", "schedule"},
		adjs:    []string{"calm", "dark", "cool", "quiet", "tired", "restful"},
		tips:    []string{"go to bed at the same time every night .", "put your phone away an hour before bed .", "keep the bedroom cool and dark ."},
	},
	{
		name:    "exercise",
		objects: []string{"running", "stretching", "pushups", "squats", "yoga", "cycling", "swimming", "walking", "muscles", "workout"},
		verbs:   []string{"train", "stretch", "run", "lift", "jog", "practice"},
		things:  []string{"shoes", "weights", "mat", "heart", "breath", "legs", "arms", "gym", "pace", "warmup"},
		adjs:    []string{"fit", "slow", "steady", "active", "sore", "light"},
		tips:    []string{"start slow and add a little more each week .", "drink water before and after you train .", "rest days help your muscles grow ."},
	},
	{
		name:    "money",
		objects: []string{"budget", "savings", "debt", "bills", "taxes", "rent", "groceries", "salary", "expenses", "loan"},
		verbs:   []string{"save", "spend", "track", "pay", "plan", "invest"},
		things:  []string{"account", "bank", "cash", "card", "receipts", "interest", "fund", "list", "payday", "spreadsheet"},
		adjs:    []string{"cheap", "careful", "monthly", "small", "extra", "steady"},
		tips:    []string{"write down every expense for one month .", "pay the bill with the highest interest first .", "move a small amount to savings on payday ."},
	},
	{
		name:    "travel",
		objects: []string{"trip", "luggage", "flight", "hotel", "passport", "train", "vacation", "map", "tickets", "suitcase"},
		verbs:   []string{"pack", "book", "travel", "visit", "explore", "plan"},
		things:  []string{"airport", "clothes", "charger", "snacks", "camera", "guide", "station", "bag", "jacket", "umbrella"},
		adjs:    []string{"light", "early", "cheap", "local", "comfortable", "safe"},
		tips:    []string{"roll your clothes to save space in the bag .", "book the tickets a few weeks early .", "keep a copy of your passport in a safe place ."},
	},
	{
		name:    "pets",
		objects: []string{"dog", "cat", "puppy", "kitten", "fish", "rabbit", "parrot", "hamster", "pet", "turtle"},
		verbs:   []string{"feed", "walk", "brush", "train", "play", "groom"},
		things:  []string{"food", "toys", "leash", "treats", "bowl", "vet", "fur", "cage", "bed", "collar"},
		adjs:    []string{"happy", "playful", "gentle", "shy", "clean", "hungry"},
		tips:    []string{"reward good behavior with a small treat .", "take your pet to the vet once a year .", "fresh water should always be in the bowl ."},
	},
	{
		name:    "coffee",
		objects: []string{"coffee", "espresso", "latte", "beans", "grinder", "filter", "cappuccino", "mug", "brew", "roast"},
		verbs:   []string{"brew", "grind", "pour", "heat", "measure", "taste"},
		things:  []string{"milk", "sugar", "kettle", "scale", "foam", "cup", "machine", "temperature", "grounds", "press"},
		adjs:    []string{"strong", "bitter", "smooth", "hot", "dark", "sweet"},
		tips:    []string{"grind the beans just before you brew .", "use water that is hot but not boiling .", "clean the machine every week ."},
	},
	{
		name:    "studying",
		objects: []string{"exam", "homework", "notes", "math", "history", "reading", "essay", "lecture", "vocabulary", "test"},
		verbs:   []string{"study", "review", "read", "write", "memorize", "learn"},
		things:  []string{"flashcards", "library", "desk", "timer", "breaks", "questions", "textbook", "teacher", "summary", "pencil"},
		adjs:    []string{"focused", "short", "clear", "daily", "quiet", "organized"},
		tips:    []string{"study in short blocks with a break after each one .", "explain the idea out loud as if you teach it .", "test yourself instead of just reading again ."},
	},
	{
		name:    "cleaning",
		objects: []string{"kitchen", "bathroom", "floor", "windows", "laundry", "dishes", "carpet", "fridge", "closet", "oven"},
		verbs:   []string{"clean", "wash", "scrub", "wipe", "sort", "dust"},
		things:  []string{"soap", "vinegar", "sponge", "cloth", "bucket", "vacuum", "brush", "towel", "detergent", "gloves"},
		adjs:    []string{"tidy", "dirty", "spotless", "greasy", "fresh", "dusty"},
		tips:    []string{"clean from the top down so dust falls on dirty parts .", "a mix of vinegar and water cleans glass well .", "spend ten minutes a day and the mess stays small ."},
	},
	{
		name:    "music",
		objects: []string{"guitar", "piano", "singing", "drums", "violin", "songs", "chords", "rhythm", "melody", "band"},
		verbs:   []string{"play", "practice", "sing", "tune", "listen", "compose"},
		things:  []string{"strings", "keys", "notes", "metronome", "scales", "lessons", "ear", "fingers", "voice", "sheet"},
		adjs:    []string{"loud", "soft", "slow", "musical", "patient", "regular"},
		tips:    []string{"practice a little every day rather than a lot once a week .", "use a metronome to keep the rhythm steady .", "record yourself and listen back ."},
	},
	{
		name:    "work",
		objects: []string{"meeting", "email", "deadline", "project", "interview", "manager", "team", "resume", "office", "career"},
		verbs:   []string{"prepare", "organize", "focus", "finish", "ask", "plan"},
		things:  []string{"calendar", "tasks", "goals", "feedback", "colleagues", "agenda", "notes", "priorities", "skills", "inbox"},
		adjs:    []string{"clear", "polite", "productive", "busy", "professional", "brief"},
		tips:    []string{"write the three most important tasks at the start of the day .", "send a short agenda before every meeting .", "ask for feedback early instead of late ."},
	},
	{
		name:    "health",
		objects: []string{"cold", "headache", "stress", "diet", "water", "vitamins", "posture", "back", "eyes", "energy"},
		verbs:   []string{"drink", "eat", "rest", "move", "stretch", "breathe"},
		things:  []string{"fruit", "doctor", "walks", "medicine", "sunlight", "habits", "meals", "fever", "chair", "screen"},
		adjs:    []string{"healthy", "balanced", "sick", "tired", "better", "gentle"},
		tips:    []string{"drink a glass of water when you wake up .", "see a doctor if the fever lasts more than three days .", "look away from the screen every twenty minutes ."},
	},
	{
		name:    "shopping",
		objects: []string{"groceries", "shoes", "clothes", "gifts", "laptop", "phone", "furniture", "jacket", "market", "sale"},
		verbs:   []string{"buy", "compare", "choose", "return", "order", "shop"},
		things:  []string{"price", "store", "reviews", "size", "discount", "brand", "quality", "list", "cart", "warranty"},
		adjs:    []string{"cheap", "expensive", "useful", "durable", "new", "used"},
		tips:    []string{"make a list before you go and stick to it .", "read a few reviews before you buy .", "wait a day before any big purchase ."},
	},
	{
		name:    "weather",
		objects: []string{"rain", "snow", "storm", "heat", "wind", "winter", "summer", "forecast", "fog", "sunshine"},
		verbs:   []string{"prepare", "dress", "check", "stay", "protect", "cover"},
		things:  []string{"coat", "boots", "umbrella", "sunscreen", "hat", "layers", "shelter", "radio", "scarf", "gloves"},
		adjs:    []string{"cold", "hot", "windy", "rainy", "icy", "humid"},
		tips:    []string{"dress in layers so you can take one off .", "check the forecast the night before .", "wear sunscreen even when it is cloudy ."},
	},
	{
		name:    "cars",
		objects: []string{"car", "tires", "engine", "brakes", "battery", "oil", "fuel", "parking", "license", "windshield"},
		verbs:   []string{"drive", "check", "change", "park", "fix", "wash"},
		things:  []string{"mechanic", "pressure", "mirror", "lights", "road", "seat", "wheel", "garage", "belt", "dashboard"},
		adjs:    []string{"safe", "slow", "careful", "flat", "worn", "smooth"},
		tips:    []string{"check the tire pressure once a month .", "keep a safe distance from the car in front .", "change the oil as the manual says ."},
	},
	{
		name:    "reading",
		objects: []string{"books", "novels", "poetry", "library", "stories", "authors", "magazines", "chapters", "mysteries", "biographies"},
		verbs:   []string{"read", "borrow", "finish", "choose", "discuss", "enjoy"},
		things:  []string{"shelf", "bookmark", "club", "pages", "characters", "plot", "genre", "lamp", "chair", "series"},
		adjs:    []string{"long", "short", "exciting", "classic", "funny", "thoughtful"},
		tips:    []string{"read twenty pages every night before bed .", "join a book club to talk about what you read .", "it is fine to stop a book you do not enjoy ."},
	},
	{
		name:    "friends",
		objects: []string{"friendship", "friends", "party", "conversation", "birthday", "neighbors", "argument", "advice", "visit", "dinner"},
		verbs:   []string{"call", "listen", "invite", "share", "apologize", "help"},
		things:  []string{"time", "message", "trust", "kindness", "plans", "jokes", "stories", "gift", "smile", "weekend"},
		adjs:    []string{"kind", "honest", "close", "friendly", "fun", "thoughtful"},
		tips:    []string{"listen more than you talk .", "send a short message to an old friend this week .", "say sorry first when you were wrong ."},
	},
	{
		name:    "computers",
		objects: []string{"laptop", "password", "email", "files", "backup", "browser", "printer", "wifi", "software", "keyboard"},
		verbs:   []string{"update", "restart", "install", "backup", "delete", "secure"},
		things:  []string{"settings", "drive", "cloud", "network", "router", "virus", "folder", "screen", "app", "disk"},
		adjs:    []string{"slow", "fast", "secure", "safe", "strong", "old"},
		tips:    []string{"turn it off and on again before anything else .", "use a long password and a different one for each site .", "back up your files every week ."},
	},
	{
		name:    "baking",
		objects: []string{"cake", "cookies", "pie", "muffins", "dough", "bread", "brownies", "cupcakes", "crust", "frosting"},
		verbs:   []string{"bake", "mix", "knead", "whisk", "cool", "measure"},
		things:  []string{"flour", "sugar", "butter", "eggs", "yeast", "vanilla", "chocolate", "tray", "bowl", "oven"},
		adjs:    []string{"sweet", "fluffy", "golden", "moist", "soft", "crunchy"},
		tips:    []string{"measure the flour with a scale for the best result .", "let the cake cool before you add frosting .", "keep the oven door closed while it bakes ."},
	},
	{
		name:    "hiking",
		objects: []string{"hike", "trail", "mountain", "forest", "camping", "tent", "backpack", "boots", "lake", "river"},
		verbs:   []string{"hike", "climb", "camp", "walk", "carry", "rest"},
		things:  []string{"water", "map", "compass", "snacks", "rain", "sun", "path", "fire", "rope", "light"},
		adjs:    []string{"steep", "long", "rocky", "safe", "quiet", "wild"},
		tips:    []string{"tell someone where you go and when you will return .", "bring more water than you think you need .", "turn back if the weather gets bad ."},
	},
	{
		name:    "children",
		objects: []string{"baby", "kids", "toddler", "homework", "toys", "bedtime", "school", "chores", "tantrums", "games"},
		verbs:   []string{"teach", "play", "read", "praise", "comfort", "guide"},
		things:  []string{"stories", "rules", "hugs", "routine", "snacks", "crayons", "park", "patience", "songs", "blocks"},
		adjs:    []string{"patient", "calm", "curious", "gentle", "consistent", "playful"},
		tips:    []string{"keep the same routine every evening .", "praise the effort , not only the result .", "give two choices instead of an order ."},
	},
	{
		name:    "language",
		objects: []string{"spanish", "french", "german", "grammar", "words", "accent", "pronunciation", "language", "phrases", "conversation"},
		verbs:   []string{"learn", "speak", "practice", "repeat", "listen", "translate"},
		things:  []string{"app", "podcast", "partner", "dictionary", "flashcards", "movies", "lessons", "tutor", "sentences", "mistakes"},
		adjs:    []string{"fluent", "daily", "simple", "foreign", "native", "slow"},
		tips:    []string{"speak from the first day , even with mistakes .", "learn ten new words every day .", "watch movies with subtitles in the language ."},
	},
	{
		name:    "home",
		objects: []string{"house", "apartment", "furniture", "paint", "walls", "lights", "garden", "roof", "door", "storage"},
		verbs:   []string{"paint", "repair", "decorate", "move", "organize", "build"},
		things:  []string{"tools", "hammer", "nails", "boxes", "shelves", "plants", "colors", "rug", "lamp", "curtains"},
		adjs:    []string{"cozy", "bright", "small", "spacious", "warm", "modern"},
		tips:    []string{"paint a small test patch before the whole wall .", "use boxes with labels when you move .", "plants make any room feel fresh ."},
	},
}

// systems are the optional system messages of a dialogue.
var systems = []string{
	"you are a helpful assistant .",
	"you are a friendly helper who gives short answers .",
	"answer in a few clear sentences .",
	"you give practical everyday advice .",
}

// questions are the user-turn templates. Slots: {o} object, {v} verb, {a}
// adjective, {t} thing, {n} topic name.
var questions = []string{
	"how do i {v} {o} ?",
	"how do i {v} my {o} ?",
	"what is the best way to {v} {o} ?",
	"can you help me {v} the {o} ?",
	"any tips on {n} and {o} ?",
	"why is my {o} so {a} ?",
	"what should i know about {o} ?",
	"tell me how to {v} {o} .",
	"i want to {v} {o} , where do i start ?",
	"do i need {t} to {v} {o} ?",
	"what do you think about {o} and {t} ?",
	"give me some advice about {n} .",
	"how often should i {v} {o} ?",
	"is it bad to {v} {o} every day ?",
	"my {o} is {a} , what can i do ?",
	"what is a simple {n} tip for a beginner ?",
}

// openers start an answer; some repeat the question's object.
var openers = []string{
	"good question !",
	"sure , here is what works for {o} .",
	"here are a few ideas about {o} .",
	"that is a common question about {n} .",
	"happy to help with {o} .",
	"there are a few simple steps .",
	"",
	"",
}

// sentences are the body templates of an answer.
var sentences = []string{
	"first , {v} the {o} with a little {t} .",
	"a {a} {o} needs some {t} and some {t2} .",
	"try to {v} your {o} every few days .",
	"it helps to keep the {t} {a} .",
	"most people {v} {o} in the morning .",
	"if the {o} is too {a} , {v} it again later .",
	"you can also use {t} instead of {t2} .",
	"do not {v} the {o} too often .",
	"for {o} , i suggest you {v} it slowly .",
	"keep the {t} close so you can {v} the {o} quickly .",
	"the key to {o} is {t} and patience .",
	"check the {t} before you {v} anything .",
	"a little {t} makes the {o} more {a} .",
	"when you {v} {o} , take your time .",
	"many beginners forget the {t} .",
	"after that , {v} the {o} and wait a few minutes .",
}

// closers end an answer.
var closers = []string{
	"good luck !",
	"have fun with your {o} !",
	"you will get better with practice .",
	"i hope this helps .",
	"enjoy !",
	"",
	"",
}
