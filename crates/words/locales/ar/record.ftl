# قواعد السجل: ما الخطأ في حقل واحد (يسبق اسمُ الحقل هذا النص)، والخطوات التي تسمح بها
# حالة القضية أو حالة إحالة الخدمة.

problem-required = حقل مطلوب
problem-too-long = أطول من { $max } حرفًا
problem-control-characters = يحتوي على رموز تحكم غير مسموح بها
problem-not-latin-script = يجب أن يُكتب بالحروف اللاتينية (نقحرة)
problem-no-letters = يجب أن يحتوي على حرف واحد على الأقل
problem-invalid-date = ليس تاريخًا بالصيغة YYYY-MM-DD
problem-date-in-future = تاريخ في المستقبل
problem-not-a-child = يجعل عمر الشخص 18 سنة أو أكثر: إدارة الحالة مخصصة للأطفال
problem-age-out-of-range = يجب أن يكون العمر بين 0 و17 سنة
problem-both-birth-date-and-age = أدخل تاريخ الميلاد أو العمر التقديري، وليس كليهما
problem-neither-birth-date-nor-age = أدخل تاريخ الميلاد، أو العمر التقديري عند غياب الوثائق
problem-not-chosen = يجب الاختيار من: { $choices }
problem-at-least-one = يجب إدخال عنصر واحد على الأقل
problem-labour-criteria-required = عمل الأطفال الاستغلالي يتطلب معيارًا واحدًا على الأقل (حرمان من التعليم أو اللعب، أذى جسدي، أجر أقل لكونه طفلًا، أو أحد أسوأ الأشكال)
problem-labour-criteria-only-for-labour = معايير العمل تخص فقط حالة عمل الأطفال الاستغلالي
problem-invalid-phone = ليس رقم هاتف صالحًا (من 6 إلى 20 رقمًا، ويمكن أن يبدأ بـ +)
problem-invalid-code = قيمة غير صالحة: المتوقع { $expected }
problem-too-many = يحتوي على أكثر من { $max } عنصرًا
problem-source-mismatch = لا يطابق طريقة تقديم هذه الإحالة
problem-out-of-range = يجب أن يكون بين { $min } و{ $max }
problem-contradicts = يسمح ويمنع الجهة والغرض والبيانات نفسها التي في { $other }
problem-expired = انتهت مدته بالفعل، أو تنتهي قبل أن تبدأ
problem-not-both = أدخل هذا أو { $other }، لا كليهما
problem-not-in-gazetteer = ليس مكانًا في دليل الأماكن (تُقبل الكتابة بـ ة/ه وى/ي وأي صورة للهمزة)؛ اختر من: { $choices }
problem-invisible-characters = يحتوي على رموز اتجاه أو رموز غير مرئية (U+200B–U+200F، U+202A–U+202E، U+2066–U+2069): اكتب الاسم بدونها

# رسالة الحالة فوق قائمة أخطاء الحقول.
violations-summary = الطلب غير مكتمل أو غير صالح ({ $count ->
        [one] مشكلة واحدة
        [two] مشكلتان
        [few] { $count } مشكلات
       *[other] { $count } مشكلة
    })
violations-more = { $count ->
        [one] ومشكلة أخرى
        [two] ومشكلتان أخريان
        [few] و{ $count } مشكلات أخرى
       *[other] و{ $count } مشكلة أخرى
    } (انظر قائمة الحقول)

move-register = تسجيل
move-refer-on = إحالة إلى جهة أخرى
move-decline = رفض
move-assign = إسناد
move-assess = تقييم
move-plan = وضع خطة
move-review = مراجعة
move-close = إغلاق
move-reopen = إعادة فتح
move-merge = دمج
case-move-not-allowed = لا يمكن { $attempted } حالة وضعها `{ $status }`؛ المسموح: { $allowed }
case-move-after-merge = لا يمكن { $attempted } حالة وضعها `{ $status }`: دُمجت في حالة أخرى تستمر بدلًا منها

task-state-requested = مطلوبة
task-state-received = مستلمة
task-state-accepted = مقبولة
task-state-rejected = مرفوضة
task-state-in-progress = قيد التنفيذ
task-state-completed = مكتملة
task-state-failed = متعذرة
task-state-cancelled = ملغاة
side-referrer = الجهة المحيلة
side-receiver = الجهة المستقبلة
task-move-not-allowed = لا يمكن أن تنقل { $side } إحالة خدمة من `{ $from }` إلى `{ $to }`؛ المسموح: { $allowed }
task-move-ended = لا يمكن أن تنقل { $side } إحالة خدمة من `{ $from }` إلى `{ $to }`: انتهت الإحالة، أو لا يحركها الآن إلا الطرف الآخر
problem-not-an-id = ليس معرّفًا من هذا النوع: المتوقع `{ $prefix }` متبوعًا بـ 32 رقمًا سداسيًا عشريًا بحروف صغيرة
