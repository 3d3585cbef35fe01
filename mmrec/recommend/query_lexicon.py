"""The query parser's own words: cues, stop words, occasions, prices. Data, not logic.

Attribute words (categories, colours, ...) are not here: they come from the taxonomy
(``synonyms`` for English, ``zh`` for Chinese), and English occasion words from the scene book
(names, labels, aliases). What is here is the language around them: how shoppers negate, state
a budget, say who the outfit is for, and the filler that carries no constraint.
"""

from __future__ import annotations

# Words that open a negation: the attribute terms after them are excluded. Chinese ones are
# also segmenter words, so that 别要 / 不想要 come out whole.
NEGATION_EN = (
    "no", "not", "without", "avoid", "except", "nothing", "never", "non", "none",
    "dont want", "do not want", "dont like", "do not like", "dont need", "do not need",
    "no more", "anything but", "other than", "rather than", "instead of",
)  # fmt: skip
NEGATION_ZH = (
    "不要", "别要", "不想要", "不需要", "不用", "不穿", "不喜欢", "别", "不", "无", "非", "除了",
    "不含", "不带", "避免", "别给", "不能是", "不是", "不能有", "没有",
)  # fmt: skip
# Words that end a negation ("no heels but a red bag", "不要黑色，要红色"). 的 closes the
# negated modifier it ends: "没有图案的纯色T恤" excludes prints, not the solid T-shirt asked for.
# Stop words in between keep it open ("without any prints", "不要太花"); unknown words close it.
POSITIVE_EN = ("but", "with", "for", "want", "need", "prefer", "instead", "only", "just")
POSITIVE_ZH = ("但", "但是", "要", "想要", "只要", "而是", "换成", "最好", "喜欢", "需要", "的")
# Words that keep a negation open across a list ("no heels or prints", "不要高跟鞋和黑色").
CONJUNCTIONS = ("and", "or", "nor", "和", "或", "或者", "及", "以及", "还有", "也不", "、", "/")

# Words after which the items named are what the wanted item goes WITH, not what is wanted:
# "black belt for formal trousers", "waistcoat to wear over a kurta", "配西裤的棕色皮带". English
# cues count only after a wanted category ("kurta for office" keeps nothing to pair with);
# Chinese 配 opens the context before the head noun, and 的 closes it.
CONTEXT_EN = ("for", "over", "to go with", "go with", "goes with", "to match", "matching",
              "to pair with", "pair with", "to wear with", "wear with", "to wear over", "wear over",
              "to wear under", "wear under")
CONTEXT_ZH = ("配", "搭", "搭配", "配上", "配合", "搭着", "配着")
# Chinese words that say more than their taxonomy term: 小白鞋 ("little white shoes") is white
# casual shoes, not any casual shoes.
IMPLIED_ZH = {"小白鞋": (("colour", "white"),)}

# Who the outfit is for, said without the words "men"/"women" (those are taxonomy gender terms).
GENDER_CUES = {
    "women": (
        "for her", "my wife", "my girlfriend", "my mom", "my mum", "my mother", "my sister",
        "wife", "girlfriend", "mom", "mum", "mother", "sister", "grandma", "aunt",
        "老婆", "妻子", "太太", "女朋友", "女友", "妈妈", "老妈", "母亲", "姐姐", "妹妹", "闺蜜", "奶奶", "阿姨",
    ),
    "men": (
        "for him", "my husband", "my boyfriend", "my dad", "my father", "my brother",
        "husband", "dad", "father", "brother", "grandpa", "uncle",
        # "boyfriend" alone is a fit ("boyfriend jeans"), so only "my boyfriend" names a man
        "老公", "丈夫", "男朋友", "男友", "爸爸", "老爸", "父亲", "哥哥", "弟弟", "爷爷",
    ),
}  # fmt: skip

# Chinese occasion words -> scene name (configs/scenes.yaml). English ones come from the scene
# book itself; names missing from the book in use are skipped, so a smaller book still works.
OCCASIONS_ZH = {
    "office": ("上班", "办公室", "通勤", "职场", "办公", "上班族", "工作"),
    "business_formal": ("商务场合", "正式场合", "面试", "开会", "商务会议", "谈判", "董事会"),
    "casual_weekend": ("周末", "逛街", "日常出门", "平时穿"),
    "date_night": ("约会", "烛光晚餐", "晚餐约会"),
    "wedding_guest": ("婚礼", "参加婚礼", "喝喜酒", "喜宴", "婚宴", "伴娘"),
    "party": ("夜店", "酒会", "生日派对", "蹦迪", "年会"),
    "sports_gym": ("健身", "健身房", "跑步", "锻炼", "瑜伽", "训练", "撸铁"),
    "beach_holiday": ("海边", "沙滩", "海滩", "度假", "海岛", "海边度假"),
    "winter_outdoor": ("冬季户外", "滑雪", "下雪", "冬天户外", "冷天"),
    "festive_ethnic": ("节日", "过节", "排灯节", "开斋节", "春节", "过年"),
    "travel": ("出差", "机场", "坐飞机", "旅途"),
}

# Filler that states no constraint; neither understood terms nor unknown words.
STOP_EN = frozenset("""
a an the for to of in on at by from as is are be am was it its this that these those i im me my
mine we our you your some any something anything one ones pair pairs piece please show find get
buy looking look looks want wanted need needs like would love nice good great new best also too
very really just so can could should will do does with and or outfit outfits clothes clothing
wear wearing worn style styled item items thing things something kind sort type
price priced prices cost costs budget rs inr rupees yuan rmb dollars
""".split())
STOP_ZH = frozenset("""
我 我的 想 想要 要 的 了 一件 一条 一双 一个 一套 一顶 一只 一副 一款 件 条 双 个 套 顶 只 副 款
给 买 穿 戴 找 来 有 吗 呢 吧 啊 呀 哦 请 帮 帮我 推荐 一下 一些 些 点 一点 可以 适合 用 的话 那种 这种
在 去 参加 时候 时 衣服 穿搭 好看 漂亮 合适 求 能 能不能 想买 需要 最好 什么 哪些 任何 太
很 比较 一起 也 都 就 还 再 上 里 这 那 些许 么 哈 可 显 显得 款式 风格 样式 类型
价格 价位 价钱 预算 元 块 块钱
""".split())

# Price ceilings. Currency words are accepted around the number and not kept (the catalog's
# prices are one currency; the number is what the shopper means).
CURRENCY_BEFORE = r"(?:rs\.?|inr|usd|rmb|cny|yuan|[₹$¥€£])?"
CURRENCY_AFTER = r"(?:rs|rupees?|inr|dollars?|bucks|usd|rmb|cny|yuan|元|块钱|块|rmb)?"
CEILING_EN = (r"under|below|less than|cheaper than|not more than|no more than|at most|up to|upto|"
              r"within|max(?:imum)?|budget(?: of| is)?|not over|<=?|≤")
CEILING_ZH_BEFORE = r"不超过|不高于|不多于|低于|少于|小于|不到|最多|最高|预算|控制在|价格在|价位在|价格|价位"
CEILING_ZH_AFTER = r"以内|以下|之内|之下|内"
