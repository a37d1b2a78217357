# إجابات قد تعطيها أي خدمة.

internal = خطأ داخلي؛ أُبلغ المشغلون
storage-unavailable = التخزين غير متاح؛ أعد المحاولة
storage-unavailable-resubmit = التخزين غير متاح؛ أعد المحاولة بالقيمة نفسها في submission_id
bus-unavailable = ناقل الرسائل غير متاح؛ أعد المحاولة
