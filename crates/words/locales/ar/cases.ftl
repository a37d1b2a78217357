# خدمة الحالات: الحالة والعمل عليها (القبول، الموظفون، المراجعات، الخطة، الإغلاق، الدمج)،
# وموافقاتها، وإحالات الخدمة، والوصول الطارئ، وإشعارات السحب، وما يخرج عبر أداة الحجب
# (القراءة، والتصدير، والإحصاءات).

## الحالة والعمل عليها
case-not-found = لا توجد حالة { $case_id }
case-anonymised = أُزيلت البيانات الشخصية للحالة { $case_id } وفق سياسة الاحتفاظ (أُغلقت منذ أكثر من المدة المحددة في `retention.anonymise_after_years`)؛ فلا يمكن تعديلها أو إعادة فتحها، فافتح حالة جديدة بإحالة جديدة
case-stale = الحالة { $case_id } في الإصدار { $current } وليس { $expected }: أعد تحميلها ثم حاول مجددًا
case-id-invalid = case_id: ليس معرّف حالة صالحًا: المتوقع `case_` تليه 32 خانة ست عشرية بأحرف صغيرة
case-not-in-area = الحالة { $case_id } ليست ضمن نطاق الجهة `{ $agency_id }`
case-no-part = لا علاقة للجهة `{ $agency_id }` بالحالة { $case_id }
case-not-persons = الحالة { $case_id } ليست من الحالات المسندة إلى الشخص { $person_id } أو إلى فريقه
case-owner-only = الجهة `{ $agency_id }` ليست جهة مالكة للحالات (الشؤون الاجتماعية)
case-list-needs-caseworker = caseworker_id: حدّد أخصائي الحالة، أو اطلب قائمة الحالات غير المسندة (unassigned = true)
case-list-not-yours = caseworker_id: يمكنك عرض حالاتك فقط، أو حالات فريقك وقائمة الانتظار إن كنت مشرفًا
case-escalations-since-invalid = since: ليس وقتًا بصيغة RFC 3339 مثل 2026-11-22T09:00:00Z
case-decision-missing = قرار القبول غير موجود
case-review-needs-caseworker = أسند الحالة إلى أخصائي قبل تسجيل المراجعات
case-closure-incomplete = الإغلاق غير مكتمل: اذكر سببه وهل استُشير الوالدان
case-closure-parents-not-consulted = الإغلاق لانتهاء الحاجة يتطلب استشارة الوالدين أولًا
case-closure-no-review = لا يمكن تقرير انتهاء الحاجة إلا بعد مراجعة واحدة على الأقل
case-closure-not-18 = تاريخ ميلاد الطفل يدل على أنه لم يبلغ 18 سنة بعد
case-plan-needs-assessment = سجّل التقييم الشامل قبل وضع الخطة
case-plan-action-not-found = ليس في خطة الحالة { $case_id } إجراء `{ $action_id }`
case-plan-action-done = الإجراء { $action_id } منجز بالفعل
case-link-kind-missing = نوع الربط غير محدد
case-link-other-missing = لا توجد الحالة الأخرى
case-merge-other-missing = لا توجد حالة للدمج
case-merge-keep-merged = الحالة { $case_id } مدموجة بالفعل في الحالة { $merged_into }
case-merge-keep-merged-elsewhere = الحالة { $case_id } مدموجة بالفعل في حالة أخرى

## موافقات الحالة
case-consent-merged = دُمجت هذه الحالة في حالة أخرى: سجّل الموافقة هناك
case-consent-not-found = ليس في الحالة { $case_id } موافقة `{ $consent_id }`؛ موافقاتها: { $consents }
case-consent-not-found-none = ليس في الحالة { $case_id } موافقة `{ $consent_id }`؛ ولا موافقات لها
case-consent-withdrawn = سُحبت الموافقة { $consent_id }؛ سجّل موافقة جديدة بدلًا منها

## الموظفون وأعباء الحالات
staff-not-a-supervisor = `{ $staff_id }` ليس مشرفًا في { $agency_id }
staff-team-full = المشرف { $supervisor_id } يشرف بالفعل على { $team ->
        [one] أخصائي واحد
        [two] أخصائيَين
        [few] { $team } أخصائيين
        [many] { $team } أخصائيًا
       *[other] { $team } أخصائي
    } (الحد الأقصى { $max })؛ مشرفون لديهم متسع: { $room }
staff-team-full-no-room = المشرف { $supervisor_id } يشرف بالفعل على { $team ->
        [one] أخصائي واحد
        [two] أخصائيَين
        [few] { $team } أخصائيين
        [many] { $team } أخصائيًا
       *[other] { $team } أخصائي
    } (الحد الأقصى { $max })؛ مشرفون لديهم متسع: لا أحد
staff-exists = الموظف `{ $staff_id }` مسجل من قبل
staff-not-a-caseworker = `{ $staff_id }` ليس أخصائي حالة في { $agency_id }
staff-not-in-team = الأخصائي { $staff_id } ليس من فريقك: أسند الحالة إلى أحد من تشرف عليهم
staff-caseload-full = لدى الأخصائي { $staff_id } { $open ->
        [one] حالة مفتوحة واحدة
        [two] حالتان مفتوحتان
        [few] { $open } حالات مفتوحة
       *[other] { $open } حالة مفتوحة
    } (الحد الأقصى { $max })؛ أخصائيون لديهم متسع: { $room }
staff-caseload-full-no-room = لدى الأخصائي { $staff_id } { $open ->
        [one] حالة مفتوحة واحدة
        [two] حالتان مفتوحتان
        [few] { $open } حالات مفتوحة
       *[other] { $open } حالة مفتوحة
    } (الحد الأقصى { $max })؛ أخصائيون لديهم متسع: لا أحد

## إحالات الخدمة
service-referral-not-found = لا توجد إحالة خدمة { $service_referral_id }
service-referral-stale = إحالة الخدمة { $service_referral_id } في الإصدار { $current } وليس { $expected }: أعد تحميلها ثم حاول مجددًا
service-referral-not-party = ليست الجهة `{ $agency_id }` طرفًا في إحالة الخدمة { $service_referral_id }
service-referral-case-not-registered = تُنشأ إحالات الخدمة للحالات المسجلة فقط؛ هذه الحالة `{ $status }`
service-referral-action-not-found = ليس في خطة الحالة { $case_id } إجراء `{ $action_id }`؛ إجراءاتها: { $actions }
service-referral-action-not-found-no-plan = ليس في خطة الحالة { $case_id } إجراء `{ $action_id }`؛ لا إجراءات فيها (ضع خطة أولًا)
service-referral-action-done = الإجراء { $action_id } منجز بالفعل؛ لا شيء لإحالته
service-referral-own-agency = الإجراء { $action_id } من مسؤولية جهتك؛ إحالة الخدمة تكون إلى جهة أخرى
service-referral-already-live = للإجراء { $action_id } إحالة خدمة قائمة ({ $service_referral_id })؛ ألغها أولًا لإعادة الإحالة
service-referral-progress-needs-reason = إحالة الخدمة قيد التنفيذ بالفعل (`in_progress`): أي تقرير تقدّم إضافي (جلسة، نتيجة جلسة استماع) يحتاج إلى ملاحظته في `reason`

## الوصول الطارئ
break-glass-not-for-agency-type = لا يحق لجهات { $agency_type } الوصول الطارئ
break-glass-not-high-risk = الحالة { $case_id } ليست عالية الخطورة: لا يحق الوصول الطارئ إليها إلا لخط الطوارئ
break-glass-already-reviewed = رُوجع هذا الوصول الطارئ من قبل
break-glass-not-found = لا يوجد وصول طارئ بهذا المعرّف (break_glass_id)
break-glass-not-in-area = الوصول الطارئ { $break_glass_id } ليس ضمن نطاق الجهة `{ $agency_id }`

## إشعارات السحب
notice-not-addressee = الإشعار { $notice_id } ليس موجهًا إلى الجهة `{ $agency_id }`
notice-not-found = لا يوجد إشعار بهذا المعرّف (notice_id)
notice-time-invalid = قيمة occurred_at في الإشعار ليست وقتًا بصيغة RFC 3339

## الإحالات الواردة
referral-on-behalf-of-another = لا يجوز للجهة `{ $agency_id }` التقديم نيابة عن جهة أخرى

## ما يخرج عبر أداة الحجب: القراءة، والتصدير، والإحصاءات، والمؤشرات
sharing-no-policy-rule = لا تسمح سياسة المشاركة لجهات { $agency_type } بشيء لغرض { $purpose }
sharing-no-consent = لا توجد في الحالة { $case_id } موافقة سارية أو سند قانوني يشمل الجهة `{ $agency_id }` لغرض { $purpose }
sharing-no-assent = وافق ولي الأمر لكن الطفل في سن الموافقة ولم يوافق، في الحالة { $case_id }
sharing-statistics-aggregates-only = غرض الإحصاء يحصل على أرقام مجمّعة فقط، لا على حالة: استخدم GetStatistics
sharing-nothing-in-common = لا تقاطع بين ما تسمح به السياسة لجهات { $agency_type } وما تسمح به الموافقة للجهة `{ $agency_id }` لغرض { $purpose }
export-busy = { $count ->
        [one] تجري عملية تصدير واحدة
        [two] تجري عمليتا تصدير
        [few] تجري { $count } عمليات تصدير
       *[other] تجري { $count } عملية تصدير
    } بالفعل؛ أعد المحاولة بعد دقيقة
statistics-not-allowed = لا تسمح سياسة المشاركة للجهة `{ $agency_id }` بالإحصاءات
indicators-not-your-governorate = اختر إحدى محافظاتك: { $governorates }
