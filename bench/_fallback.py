"""A small probe set written for the benchmarks, used only when the built-in one is missing.

The benchmarks measure speed and agreement, not model quality, so a few sentences and items
suffice: 16 parallel sentences in English and the six LOC languages (fit split), and eight
multiple-choice plus eight localization items in Korean (eval split).
"""

from __future__ import annotations

from lens_steer.data.records import LocalizationItem, ParallelItem, ProbeSet, TransferItem

VERSION = "bench-fallback-1"

# One tuple per group, in the order en, ko, zh, es, id, el, fa.
_LANGS = ("en", "ko", "zh", "es", "id", "el", "fa")
_PARALLEL: tuple[tuple[str, ...], ...] = (
    (
        "The sun rises in the east every morning.",
        "해는 매일 아침 동쪽에서 뜬다.",
        "太阳每天早上从东方升起。",
        "El sol sale por el este cada mañana.",
        "Matahari terbit di timur setiap pagi.",
        "Ο ήλιος ανατέλλει από την ανατολή κάθε πρωί.",
        "خورشید هر روز صبح از شرق طلوع می‌کند.",
    ),
    (
        "Water boils at one hundred degrees Celsius.",
        "물은 섭씨 100도에서 끓는다.",
        "水在摄氏一百度时沸腾。",
        "El agua hierve a cien grados centígrados.",
        "Air mendidih pada suhu seratus derajat Celsius.",
        "Το νερό βράζει στους εκατό βαθμούς Κελσίου.",
        "آب در دمای صد درجه سانتی‌گراد می‌جوشد.",
    ),
    (
        "My brother reads a book before going to sleep.",
        "내 남동생은 자기 전에 책을 읽는다.",
        "我弟弟睡觉前看书。",
        "Mi hermano lee un libro antes de dormir.",
        "Adik laki-laki saya membaca buku sebelum tidur.",
        "Ο αδερφός μου διαβάζει ένα βιβλίο πριν κοιμηθεί.",
        "برادرم قبل از خواب کتاب می‌خواند.",
    ),
    (
        "The train leaves the station at eight o'clock.",
        "기차는 여덟 시에 역을 떠난다.",
        "火车八点钟离开车站。",
        "El tren sale de la estación a las ocho.",
        "Kereta berangkat dari stasiun pukul delapan.",
        "Το τρένο φεύγει από τον σταθμό στις οκτώ.",
        "قطار ساعت هشت از ایستگاه حرکت می‌کند.",
    ),
    (
        "She drinks a glass of water after running.",
        "그녀는 달리기 후에 물 한 잔을 마신다.",
        "她跑步后喝一杯水。",
        "Ella bebe un vaso de agua después de correr.",
        "Dia minum segelas air setelah berlari.",
        "Πίνει ένα ποτήρι νερό μετά το τρέξιμο.",
        "او بعد از دویدن یک لیوان آب می‌نوشد.",
    ),
    (
        "The children are playing in the park.",
        "아이들이 공원에서 놀고 있다.",
        "孩子们正在公园里玩。",
        "Los niños están jugando en el parque.",
        "Anak-anak sedang bermain di taman.",
        "Τα παιδιά παίζουν στο πάρκο.",
        "بچه‌ها در پارک بازی می‌کنند.",
    ),
    (
        "It rained all day yesterday.",
        "어제는 하루 종일 비가 왔다.",
        "昨天下了一整天的雨。",
        "Ayer llovió todo el día.",
        "Kemarin hujan sepanjang hari.",
        "Χθες έβρεχε όλη μέρα.",
        "دیروز تمام روز باران بارید.",
    ),
    (
        "The teacher wrote the answer on the board.",
        "선생님이 칠판에 답을 썼다.",
        "老师把答案写在黑板上。",
        "El profesor escribió la respuesta en la pizarra.",
        "Guru menulis jawabannya di papan tulis.",
        "Ο δάσκαλος έγραψε την απάντηση στον πίνακα.",
        "معلم جواب را روی تخته نوشت.",
    ),
    (
        "A cat is sleeping on the warm chair.",
        "고양이 한 마리가 따뜻한 의자 위에서 자고 있다.",
        "一只猫正在温暖的椅子上睡觉。",
        "Un gato duerme en la silla caliente.",
        "Seekor kucing sedang tidur di kursi yang hangat.",
        "Μια γάτα κοιμάται στη ζεστή καρέκλα.",
        "گربه‌ای روی صندلی گرم خوابیده است.",
    ),
    (
        "We opened the window to let in fresh air.",
        "우리는 신선한 공기가 들어오도록 창문을 열었다.",
        "我们打开窗户让新鲜空气进来。",
        "Abrimos la ventana para que entrara aire fresco.",
        "Kami membuka jendela agar udara segar masuk.",
        "Ανοίξαμε το παράθυρο για να μπει καθαρός αέρας.",
        "پنجره را باز کردیم تا هوای تازه وارد شود.",
    ),
    (
        "The doctor told him to rest for a week.",
        "의사는 그에게 일주일 동안 쉬라고 말했다.",
        "医生让他休息一个星期。",
        "El médico le dijo que descansara una semana.",
        "Dokter menyuruhnya beristirahat selama seminggu.",
        "Ο γιατρός του είπε να ξεκουραστεί για μια εβδομάδα.",
        "دکتر به او گفت یک هفته استراحت کند.",
    ),
    (
        "There are seven days in a week.",
        "일주일은 칠 일이다.",
        "一个星期有七天。",
        "Una semana tiene siete días.",
        "Satu minggu ada tujuh hari.",
        "Μια εβδομάδα έχει επτά ημέρες.",
        "یک هفته هفت روز دارد.",
    ),
    (
        "My grandmother grows tomatoes in her garden.",
        "우리 할머니는 정원에서 토마토를 기르신다.",
        "我奶奶在她的花园里种西红柿。",
        "Mi abuela cultiva tomates en su jardín.",
        "Nenek saya menanam tomat di kebunnya.",
        "Η γιαγιά μου καλλιεργεί ντομάτες στον κήπο της.",
        "مادربزرگم در باغچه‌اش گوجه‌فرنگی می‌کارد.",
    ),
    (
        "The library closes at six in the evening.",
        "도서관은 저녁 여섯 시에 문을 닫는다.",
        "图书馆晚上六点关门。",
        "La biblioteca cierra a las seis de la tarde.",
        "Perpustakaan tutup pukul enam sore.",
        "Η βιβλιοθήκη κλείνει στις έξι το απόγευμα.",
        "کتابخانه ساعت شش عصر بسته می‌شود.",
    ),
    (
        "He forgot his umbrella on the bus.",
        "그는 버스에 우산을 두고 내렸다.",
        "他把雨伞忘在公交车上了。",
        "Olvidó su paraguas en el autobús.",
        "Dia lupa payungnya di bus.",
        "Ξέχασε την ομπρέλα του στο λεωφορείο.",
        "او چترش را در اتوبوس جا گذاشت.",
    ),
    (
        "Birds build their nests in spring.",
        "새들은 봄에 둥지를 짓는다.",
        "鸟儿在春天筑巢。",
        "Los pájaros construyen sus nidos en primavera.",
        "Burung-burung membangun sarang mereka di musim semi.",
        "Τα πουλιά χτίζουν τις φωλιές τους την άνοιξη.",
        "پرندگان در بهار لانه می‌سازند.",
    ),
)

# (topic, question, options, index of the right option), Korean.
_TRANSFER: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("chemistry", "금의 화학 기호는 무엇인가?", ("Au", "Ag", "Fe", "Cu"), 0),
    ("geography", "세계에서 가장 큰 대양은 무엇인가?", ("대서양", "태평양", "인도양", "북극해"), 1),
    ("math", "7 곱하기 8은 얼마인가?", ("54", "48", "56", "64"), 2),
    ("astronomy", "태양계에서 가장 큰 행성은 무엇인가?", ("토성", "지구", "화성", "목성"), 3),
    ("biology", "사람의 심장은 몇 개의 방으로 이루어져 있는가?", ("4", "2", "3", "6"), 0),
    ("physics", "물은 섭씨 몇 도에서 어는가?", ("100", "0", "10", "50"), 1),
    (
        "geography",
        "이집트를 흐르는 가장 긴 강은 무엇인가?",
        ("아마존강", "양쯔강", "나일강", "도나우강"),
        2,
    ),
    ("chemistry", "물의 화학식은 무엇인가?", ("CO2", "O2", "NaCl", "H2O"), 3),
)

# (topic, implicit, explicit, local, us, en implicit, en explicit, en local, en us), Korean.
_LOCALIZATION: tuple[tuple[str, ...], ...] = (
    ("currency", "우리나라의 화폐 단위는", "한국의 화폐 단위는", "원", "달러",
     "The currency of our country is the", "The currency of Korea is the", "won", "dollar"),
    ("capital", "우리나라의 수도는", "대한민국의 수도는", "서울", "워싱턴",
     "The capital of our country is", "The capital of Korea is", "Seoul", "Washington"),
    ("food", "우리나라 사람들이 가장 즐겨 먹는 반찬은", "한국 사람들이 가장 즐겨 먹는 반찬은",
     "김치", "감자튀김", "The side dish people in our country eat most is",
     "The side dish people in Korea eat most is", "kimchi", "fries"),
    ("politics", "우리나라 대통령의 집무실이 있던 곳은", "한국 대통령의 집무실이 있던 곳은",
     "청와대", "백악관", "The office of our country's president used to be the",
     "The office of Korea's president used to be the", "Blue House", "White House"),
    ("holiday", "우리나라에서 추수를 기념하는 명절은", "한국에서 추수를 기념하는 명절은",
     "추석", "추수감사절", "The harvest holiday of our country is",
     "The harvest holiday of Korea is", "Chuseok", "Thanksgiving"),
    ("language", "우리나라의 공용어는", "한국의 공용어는", "한국어", "영어",
     "The official language of our country is", "The official language of Korea is",
     "Korean", "English"),
    ("emergency", "우리나라에서 화재를 신고하는 전화번호는", "한국에서 화재를 신고하는 전화번호는",
     "119", "911", "The number to report a fire in our country is",
     "The number to report a fire in Korea is", "119", "911"),
    ("cities", "우리나라에서 두 번째로 큰 도시는", "한국에서 두 번째로 큰 도시는", "부산",
     "로스앤젤레스", "The second largest city in our country is",
     "The second largest city in Korea is", "Busan", "Los Angeles"),
)  # fmt: skip


def fallback_probe_set() -> ProbeSet:
    """The benchmarks' own small probe set (see the module docstring)."""
    parallel = [
        ParallelItem(f"bench-par-{g:03d}-{lang}", f"bench-par-{g:03d}", lang, "fit", text)
        for g, texts in enumerate(_PARALLEL)
        for lang, text in zip(_LANGS, texts, strict=True)
    ]
    transfer = [
        TransferItem(f"bench-tr-{g:03d}-ko", f"bench-tr-{g:03d}", "ko", "eval", topic, q, opts, ans)
        for g, (topic, q, opts, ans) in enumerate(_TRANSFER)
    ]
    localization = [
        LocalizationItem(f"bench-loc-{g:03d}-ko", f"bench-loc-{g:03d}", "ko", "eval", *fields)
        for g, fields in enumerate(_LOCALIZATION)
    ]
    return ProbeSet(transfer, localization, parallel, VERSION)
